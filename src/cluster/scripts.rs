//! The Lua scripts herald runs in Redis. Each is one atomic step: a push is logged and routed,
//! or neither; a node is entered for its users and told the log's head in the same step, so that
//! every push after that head is routed to it.
//!
//! Keys are named from the prefix passed as `ARGV[1]` ([`super::wire::Keys`] names the same);
//! the scripts run on one Redis (or a Redis Cluster shard holding every herald key).

/// What the scripts that write begin with: the prefix `p`, Redis's clock `now` (ms), the epoch
/// (`ARGV[2]` kept when Redis holds none, its stream started with an entry that is not a push:
/// the log is never empty, so an offset given before the first push counts from the epoch's
/// start), and `newest()`, the newest entry's id.
const PRELUDE: &str = r#"
local p = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('GET', p .. ':epoch')
if not epoch then
  epoch = ARGV[2]
  redis.call('SET', p .. ':epoch', epoch)
  redis.call('XADD', p .. ':log', '*', 'm', cmsgpack.pack('e', {}, ''))
end
local function newest()
  local last = redis.call('XREVRANGE', p .. ':log', '+', '-', 'COUNT', 1)
  if last[1] then return last[1][1] end
  return '0-0'
end
"#;

/// The push script: `PUSH` after the prelude.
pub fn push() -> String {
    format!("{PRELUDE}{PUSH}")
}

/// The join script: `JOIN` after the prelude.
pub fn join() -> String {
    format!("{PRELUDE}{JOIN}")
}

/// The heartbeat script: `HEARTBEAT` after the prelude.
pub fn heartbeat() -> String {
    format!("{PRELUDE}{HEARTBEAT}")
}

/// `ARGV`: prefix, a new epoch (kept only when Redis holds none), window in ms, kind (`u`, `m`,
/// `a`), the notification, the per-user rate (pushes a second, 0: none) and burst, the event's
/// name (empty for `notification`), the deadline (Redis's clock, ms; 0: none), then the user ids.
///
/// A push that runs after its deadline does nothing and returns `{epoch, 'late'}`: its node
/// stops waiting for the answer soon after the deadline and serves its own sockets alone, so a
/// push held up in a stalled Redis and run when it resumes would reach them twice.
///
/// A push is published on the channel of every node entered for its users, whatever its
/// expiry: a node's heartbeat is late after Redis stalled longer than the expiry (for more than
/// a minute, the node is forgotten: see the heartbeat), or once the node is cut off, and its
/// pub/sub connection may be alive all along. Skipping it until its next heartbeat would lose
/// what it was owed in between, and removing its entries would lose its users' pushes for good.
/// A channel with a subscriber is proof enough that its node lives. An entry is removed only
/// when its node's channel had none and Redis has not heard from the node for a minute past
/// its expiry (a node whose subscription is being rebuilt enters its users again and reads what
/// it missed from the stream). The nodes reached are those whose channel had a subscriber.
///
/// With a rate, a user with sockets somewhere spends a token, and one whose bucket is empty is
/// left out (a one-user push is then not logged). Returns `{epoch, id or false, nodes reached,
/// users left out, ms until a token}`.
const PUSH: &str = r#"
local deadline = tonumber(ARGV[9])
if deadline > 0 and now > deadline then
  return {epoch, 'late'}
end
local kind = ARGV[4]
local rate = tonumber(ARGV[6])
local burst = tonumber(ARGV[7])
local known = {}
local function heard(node)
  local a = known[node]
  if a == nil then
    local until_ms = redis.call('ZSCORE', p .. ':nodes', node)
    a = until_ms ~= false and tonumber(until_ms) >= now - 60000
    known[node] = a
  end
  return a
end
local nodes = {}
local unheard = {}
local users = {}
local limited = 0
local wait = 0
for i = 10, #ARGV do
  local u = ARGV[i]
  local key = p .. ':u:' .. u
  local here = redis.call('HKEYS', key)
  local ok = true
  if rate > 0 and #here > 0 then
    local bucket = p .. ':rate:' .. u
    local b = redis.call('HMGET', bucket, 't', 'at')
    local tokens = tonumber(b[1]) or burst
    local at = tonumber(b[2]) or now
    tokens = math.min(burst, tokens + (now - at) * rate / 1000)
    if tokens >= 1 then
      tokens = tokens - 1
    else
      ok = false
      wait = math.max(wait, math.ceil((1 - tokens) * 1000 / rate))
    end
    redis.call('HSET', bucket, 't', tostring(tokens), 'at', now)
    redis.call('PEXPIRE', bucket, math.ceil(burst * 1000 / rate) + 1000)
  end
  if ok then
    users[#users + 1] = u
    for _, n in ipairs(here) do
      nodes[n] = true
      if not heard(n) then
        local keys = unheard[n] or {}
        keys[#keys + 1] = key
        unheard[n] = keys
      end
    end
  else
    limited = limited + 1
  end
end
if kind == 'u' and limited > 0 then
  return {epoch, false, 0, limited, wait}
end
local m = cmsgpack.pack(kind, users, ARGV[5], ARGV[8])
local id = redis.call('XADD', p .. ':log', 'MINID', '~', now - tonumber(ARGV[3]), '*', 'm', m)
local msg = id .. ' ' .. m
local reached = 0
if kind == 'a' then
  reached = redis.call('PUBLISH', p .. ':all', msg)
else
  for n in pairs(nodes) do
    if redis.call('PUBLISH', p .. ':node:' .. n, msg) > 0 then
      reached = reached + 1
    elseif unheard[n] then
      for _, key in ipairs(unheard[n]) do redis.call('HDEL', key, n) end
    end
  end
end
return {epoch, id, reached, limited, 0}
"#;

/// `ARGV`: prefix, a new epoch, this node, then the user ids it now holds sockets of.
///
/// Enters the node for each user, and puts a sync mark with the log's head on the node's
/// channel: every push routed to it before the mark is at or before that head, every push
/// after the head is routed to it. Returns `{epoch, head, oldest entry}`: trimming drops the
/// oldest entries first, so an offset not older than the oldest one lost nothing after it.
const JOIN: &str = r#"
local node = ARGV[3]
for i = 4, #ARGV do
  local key = p .. ':u:' .. ARGV[i]
  if redis.call('HEXISTS', key, node) == 0 then
    redis.call('HSET', key, node, 1)
  end
end
local head = newest()
local oldest = redis.call('XRANGE', p .. ':log', '-', '+', 'COUNT', 1)
local first = head
if oldest[1] then first = oldest[1][1] end
redis.call('PUBLISH', p .. ':node:' .. node, 'S ' .. head)
return {epoch, head, first}
"#;

/// `ARGV`: prefix, a new epoch, this node, how long it counts as alive (ms).
///
/// Keeps the node alive, forgets nodes dead for a minute, and puts a sync mark on the node's
/// channel (which proves its pub/sub connection delivers). Returns `{epoch, head, now}`: the
/// node reads Redis's clock from it to give its pushes their deadline.
const HEARTBEAT: &str = r#"
redis.call('ZADD', p .. ':nodes', now + tonumber(ARGV[4]), ARGV[3])
redis.call('ZREMRANGEBYSCORE', p .. ':nodes', '-inf', now - 60000)
local head = newest()
redis.call('PUBLISH', p .. ':node:' .. ARGV[3], 'S ' .. head)
return {epoch, head, now}
"#;

/// `ARGV`: prefix, user. The live nodes holding sockets of the user, each with the count it
/// last wrote: `{node, count, node, count, ...}`.
pub const PRESENCE: &str = r#"
local p = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local h = redis.call('HGETALL', p .. ':u:' .. ARGV[2])
for i = 1, #h, 2 do
  local until_ms = redis.call('ZSCORE', p .. ':nodes', h[i])
  if until_ms ~= false and tonumber(until_ms) >= now then
    out[#out + 1] = h[i]
    out[#out + 1] = h[i + 1]
  end
end
return out
"#;

/// `ARGV`: the key, this node, how long the lead lasts (ms). Takes or keeps the lead of reading
/// the Socket.IO emitter's channels: one node reads them, so that each emitted message becomes
/// one push. Returns 1 when this node leads.
pub const LEAD: &str = r#"
local cur = redis.call('GET', ARGV[1])
if cur == false then
  redis.call('SET', ARGV[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
if cur == ARGV[2] then
  redis.call('PEXPIRE', ARGV[1], ARGV[3])
  return 1
end
return 0
"#;
