// herald behind nginx, which runs README.md's own configuration ("Behind nginx": `scope(t).nginx()`
// reads it) with TLS in front of herald's public port: socket.io-client on each transport and `ws`
// on `/ws` through it; herald reading each client's address from X-Forwarded-For
// (`--trusted-proxies 127.0.0.1`, nginx's address), also for the polling requests of several
// clients that nginx carries on its shared keep-alive connections; herald's default per-address
// limits counting each client, not nginx; and herald trusting no proxy.
//
// The clients leave from addresses of their own in 127.0.0.0/8, which Linux routes entirely to
// the loopback interface, while nginx reaches herald from 127.0.0.1: `ws` binds one with its
// `localAddress` option; socket.io-client with an `https.Agent` bound to it, since its polling
// transport (xmlhttprequest-ssl) takes `agent` from the options but not `localAddress`, and its
// websocket transport hands the agent to `ws`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Agent } from 'node:https';

import WebSocket from 'ws';

import {
  assertNotification,
  assertRawNotification,
  eventually,
  metrics,
  notificationsUntil,
  once,
  PATIENCE,
  push,
  recordRaw,
  recordWithOffset,
  scope,
  subscribeRaw,
  TEST_TIMEOUT,
  user,
  withoutOffset,
} from './harness.js';

const limit = { timeout: TEST_TIMEOUT };

const LIKE = {
  type: 'LIKE',
  message: 'Someone liked your post',
  actorId: 'user-9',
  data: { postId: 'p1' },
};

// herald trusting nginx's address.
const TRUSTING_NGINX = ['--trusted-proxies', '127.0.0.1'];

// herald started with `args`, and nginx in front of it.
async function proxied(s, args = TRUSTING_NGINX) {
  const herald = await s.herald({ args });
  const nginx = await s.nginx({ upstreamPort: herald.publicPort });
  return { herald, nginx };
}

// `GET /v1/users/{userId}` of a user online with `sockets` sockets from `addresses`.
async function assertUser(herald, userId, sockets, addresses) {
  const want = { userId, online: true, sockets, addresses };
  assert.deepEqual(await user(herald.control, userId), want);
}

// herald's refusals at accept by the per-address caps and the total one:
// `herald_connections_refused_total` by reason.
async function refusals(herald) {
  const m = await metrics(herald.control);
  const reasons = ['per_ip', 'rate', 'total'];
  return Object.fromEntries(
    reasons.map((r) => [r, m[`herald_connections_refused_total{reason="${r}"}`]]),
  );
}

// A socket.io-client socket through nginx whose connections leave from `address`, subscribing to
// `userId` on every `connect`, as the front end does; resolves once subscribed, with its
// notifications (`recordWithOffset`) and every `disconnect` it has had.
async function ioClient(s, nginx, userId, address, opts = {}) {
  const agent = new Agent({ localAddress: address, keepAlive: true });
  const socket = s.io(nginx.url, { agent, ...opts });
  s.defer(() => agent.destroy());
  const subscribed = recordWithOffset(socket, 'subscribed');
  const notifications = recordWithOffset(socket, 'notification');
  const disconnects = [];
  socket.on('disconnect', (reason) => disconnects.push(reason));
  socket.on('connect', () => socket.emit('subscribe', userId));
  const data = await subscribed.next();
  assert.deepEqual(data, { userId, socketId: socket.id, offset: subscribed.lastOffset });
  return { socket, notifications, disconnects };
}

// An attempt of a `ws` client from `address` to open nginx's `/ws`: resolves with `{ ws }` once
// open, or with `{ status, retryAfter }` when the answer is an HTTP error; fails on anything else.
// The WebSocket is terminated when the test ends.
function openWs(s, nginx, address, options = {}) {
  const ws = new WebSocket(`${nginx.wsUrl}/ws`, { localAddress: address, ...options });
  s.defer(() => ws.terminate());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ws from ${address}: no answer`)), PATIENCE);
    ws.on('open', () => {
      clearTimeout(timer);
      resolve({ ws });
    });
    ws.on('unexpected-response', (_, res) => {
      clearTimeout(timer);
      res.resume();
      resolve({ status: res.statusCode, retryAfter: res.headers['retry-after'] });
      ws.terminate();
    });
    // Once answered, the error `terminate` reports for the handshake it aborts changes nothing.
    ws.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`ws from ${address}: ${e.message}`));
    });
  });
}

// A `ws` client from `address` on nginx's `/ws`, subscribed to `userId`: `{ ws, messages }`.
async function rawClient(s, nginx, userId, address, options) {
  const { ws, status } = await openWs(s, nginx, address, options);
  assert.ok(ws, `ws from ${address} for ${userId}: HTTP ${status}`);
  const messages = recordRaw(ws);
  await subscribeRaw(ws, messages, userId);
  return { ws, messages };
}

// `POST /v1/broadcast`: asserts 202 and returns the body.
async function broadcast(control, notification) {
  const res = await fetch(`${control}/v1/broadcast`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ notification }),
  });
  const text = await res.text();
  assert.equal(res.status, 202, `broadcast: ${res.status} ${text}`);
  return JSON.parse(text);
}

const range = (n) => [...Array(n).keys()];

for (const [name, opts] of [
  ['websocket', { transports: ['websocket'] }],
  ['polling', { transports: ['polling'], upgrade: false }],
]) {
  test(`socket.io-client through nginx, ${name} only, from its own address`, limit, async (t) => {
    const s = scope(t);
    const { herald, nginx } = await proxied(s);
    const userId = `u-${name}`;
    const { socket, notifications } = await ioClient(s, nginx, userId, '127.0.0.2', opts);
    assert.equal(socket.io.engine.transport.name, name);

    for (const sent of [LIKE, { type: 'TEST', message: 'second' }]) {
      const pushed = await push(herald.control, userId, sent);
      assert.deepEqual(withoutOffset(pushed), { sockets: 1 });
      assertNotification(await notifications.next(), sent);
      assert.equal(notifications.lastOffset, pushed.offset);
    }
    await push(herald.control, userId, { message: 'sentinel' });
    assert.deepEqual(await notificationsUntil(notifications, 'sentinel'), []);
    assert.equal(socket.io.engine.transport.name, name);
    // The client's address, not nginx's 127.0.0.1.
    await assertUser(herald, userId, 1, ['127.0.0.2']);
  });
}

test('socket.io-client through nginx: polling, then the upgrade', limit, async (t) => {
  const s = scope(t);
  const { herald, nginx } = await proxied(s);
  const { socket, notifications, disconnects } = await ioClient(s, nginx, 'u-up', '127.0.0.2');
  const engine = socket.io.engine;
  const id = socket.id;

  const pushed = await push(herald.control, 'u-up', LIKE);
  assert.deepEqual(withoutOffset(pushed), { sockets: 1 });
  assertNotification(await notifications.next(), LIKE);

  if (engine.transport.name !== 'websocket') await once(engine, 'upgrade');
  assert.equal(engine.transport.name, 'websocket');
  const after = { type: 'TEST', message: 'after the upgrade' };
  assert.deepEqual(withoutOffset(await push(herald.control, 'u-up', after)), { sockets: 1 });
  await push(herald.control, 'u-up', { message: 'sentinel' });
  const before = await notificationsUntil(notifications, 'sentinel');
  assert.equal(before.length, 1, JSON.stringify(before));
  assertNotification(before[0], after);
  assert.equal(socket.id, id, 'the same session');
  assert.deepEqual(disconnects, []);
  await assertUser(herald, 'u-up', 1, ['127.0.0.2']);
  assert.deepEqual(await refusals(herald), { per_ip: 0, rate: 0, total: 0 });
});

test('ws on /ws through nginx: an X-Forwarded-For of its own is not believed', limit, async (t) => {
  const s = scope(t);
  const { herald, nginx } = await proxied(s);
  const plain = await rawClient(s, nginx, 'u-raw', '127.0.0.2');
  // nginx appends the address it sees, `203.0.113.7, 127.0.0.2`, and herald takes the rightmost
  // address that is not a trusted proxy.
  const spoofing = await rawClient(s, nginx, 'u-raw', '127.0.0.2', {
    headers: { 'X-Forwarded-For': '203.0.113.7' },
  });

  const pushed = await push(herald.control, 'u-raw', LIKE);
  assert.deepEqual(withoutOffset(pushed), { sockets: 2 });
  for (const { messages } of [plain, spoofing]) {
    assertRawNotification(await messages.next(), LIKE, pushed.offset);
  }
  await assertUser(herald, 'u-raw', 2, ['127.0.0.2']);
});

test('two polling clients on shared keep-alive connections: each its own', limit, async (t) => {
  const s = scope(t);
  const { herald, nginx } = await proxied(s);
  const polling = { transports: ['polling'], upgrade: false };
  const a = await ioClient(s, nginx, 'u-a', '127.0.0.2', polling);
  const b = await ioClient(s, nginx, 'u-b', '127.0.0.5', polling);
  await assertUser(herald, 'u-a', 1, ['127.0.0.2']);
  await assertUser(herald, 'u-b', 1, ['127.0.0.5']);

  // Each client in turn sends a packet (its ack comes back on its poll) while both polls are
  // held. Its POST then needs a connection to herald besides the one its poll holds: were each of
  // nginx's upstream connections kept to one client, herald would have accepted at least four.
  // Fewer means that some connection carried requests of both clients.
  for (const [who, { socket }] of [
    ['u-a', a],
    ['u-b', b],
  ]) {
    await eventually('both polls held by herald', async () => {
      return (await metrics(herald.control)).herald_socketio_polls_held === 2;
    });
    const ack = await socket.timeout(PATIENCE).emitWithAck('subscribe', who);
    assert.deepEqual(withoutOffset(ack), { userId: who, socketId: socket.id });
  }
  const accepted = (await metrics(herald.control)).herald_connections_accepted_total;
  assert.ok(accepted < 4, `herald accepted ${accepted} connections from nginx: none shared`);

  for (const [who, { notifications }] of [
    ['u-a', a],
    ['u-b', b],
  ]) {
    const pushed = await push(herald.control, who, { message: `to ${who}` });
    assert.deepEqual(withoutOffset(pushed), { sockets: 1 });
    assertNotification(await notifications.next(), { message: `to ${who}` });
  }
  await assertUser(herald, 'u-a', 1, ['127.0.0.2']);
  await assertUser(herald, 'u-b', 1, ['127.0.0.5']);
});

// Before herald read X-Forwarded-For, every one of these counted as nginx's 127.0.0.1 against the
// default limits: past a burst of 100 the rate (20 a second) refused them with 429, and from the
// 1,001st on the cap per address did (the last test shows the first with a herald trusting no
// proxy).
test('1,500 WebSockets from 100 addresses, default per-address limits', limit, async (t) => {
  const s = scope(t);
  const { herald, nginx } = await proxied(s);
  const ADDRESSES = 100;
  const EACH = 15;
  const address = (i) => `127.0.1.${i + 1}`;

  // A round opens one from each address at once; the next round waits for it.
  const clients = [];
  for (let round = 0; round < EACH; round++) {
    const opened = await Promise.all(
      range(ADDRESSES).map((i) => rawClient(s, nginx, `many-${i + 1}`, address(i))),
    );
    clients.push(...opened);
  }
  assert.equal((await metrics(herald.control)).herald_websockets, ADDRESSES * EACH);
  assert.deepEqual(await refusals(herald), { per_ip: 0, rate: 0, total: 0 });
  for (const i of range(ADDRESSES)) await assertUser(herald, `many-${i + 1}`, EACH, [address(i)]);

  const everyone = { type: 'TEST', message: 'to everyone' };
  const sent = await broadcast(herald.control, everyone);
  assert.deepEqual(withoutOffset(sent), { sockets: ADDRESSES * EACH, rateLimited: 0 });
  for (const { messages } of clients) {
    assertRawNotification(await messages.next(), everyone, sent.offset);
  }

  await Promise.all(
    clients.map(({ ws }) => {
      const closed = once(ws, 'close');
      ws.close(1000);
      return closed;
    }),
  );
  await eventually('herald closing every WebSocket', async () => {
    return (await metrics(herald.control)).herald_websockets === 0;
  });
});

test('a flood from one address behind nginx is limited by that address alone', limit, async (t) => {
  const s = scope(t);
  const { herald, nginx } = await proxied(s);
  const FLOOD = 300;

  // As fast as it can: every handshake at once.
  const refusing = new EventEmitter();
  const attempts = range(FLOOD).map(async () => {
    const result = await openWs(s, nginx, '127.0.0.3');
    if (result.status) refusing.emit('refused');
    return result;
  });
  // The flooder being refused, another address behind the same nginx connects.
  await once(refusing, 'refused');
  const other = await rawClient(s, nginx, 'u-other', '127.0.0.4');
  const pushed = await push(herald.control, 'u-other', LIKE);
  assertRawNotification(await other.messages.next(), LIKE, pushed.offset);

  const results = await Promise.all(attempts);
  const opened = results.filter((r) => r.ws);
  const refused = results.filter((r) => !r.ws);
  for (const { status, retryAfter } of refused) {
    assert.equal(status, 429);
    assert.match(String(retryAfter), /^[1-9]\d*$/, 'Retry-After in whole seconds');
  }
  // The burst (5 s worth of 20 a second) at least, and not all.
  assert.ok(opened.length >= 100, `${opened.length} of ${FLOOD} opened`);
  assert.ok(refused.length > 0, `${refused.length} of ${FLOOD} refused`);
  assert.deepEqual(await refusals(herald), { per_ip: 0, rate: refused.length, total: 0 });
  await assertUser(herald, 'u-other', 1, ['127.0.0.4']);
});

test('herald trusting no proxy behind nginx: every client is nginx', limit, async (t) => {
  const s = scope(t);
  const { herald, nginx } = await proxied(s, []);
  const raw = await rawClient(s, nginx, 'u-raw', '127.0.0.2');
  const polling = await ioClient(s, nginx, 'u-poll', '127.0.0.5', {
    transports: ['polling'],
    upgrade: false,
  });
  const websocket = await ioClient(s, nginx, 'u-ws', '127.0.0.6', { transports: ['websocket'] });
  for (const userId of ['u-raw', 'u-poll', 'u-ws']) {
    await assertUser(herald, userId, 1, ['127.0.0.1']);
  }
  const pushed = await push(herald.control, 'u-raw', LIKE);
  assertRawNotification(await raw.messages.next(), LIKE, pushed.offset);
  for (const [userId, { notifications }] of [
    ['u-poll', polling],
    ['u-ws', websocket],
  ]) {
    await push(herald.control, userId, LIKE);
    assertNotification(await notifications.next(), LIKE);
  }

  // And so they share nginx's limits: 200 WebSockets from 200 addresses at once are more than its
  // burst of 100 (what the 1,500 of the test above would meet).
  const attempts = await Promise.all(range(200).map((i) => openWs(s, nginx, `127.0.2.${i + 1}`)));
  const refused = attempts.filter((r) => !r.ws);
  assert.ok(refused.length > 0, 'some refused');
  assert.deepEqual(
    [...new Set(refused.map((r) => r.status))],
    [429],
    "refused for the rate of nginx's address",
  );

  // One warning, naming the flag, however many requests carried the header.
  const warnings = herald.log().split('\n').filter((line) => line.includes('--trusted-proxies'));
  assert.equal(warnings.length, 1, herald.log());
  assert.match(warnings[0], /WARN/);
  assert.match(warnings[0], /X-Forwarded-For/);
  assert.match(warnings[0], /peer=127\.0\.0\.1/);
});
