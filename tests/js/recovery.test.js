// Notification recovery: herald keeps every push in an ordered log with offsets, and a client
// whose connection dropped gets what it missed when it comes back. A raw `/ws` client resubscribes
// with the last offset it saw; socket.io-client recovers its session by itself (connection state
// recovery, `socket.recovered`). Checked with the clients front ends use: a thousand `ws` and
// socket.io-client clients whose connections are killed while pushes go on; herald restarted with
// and without --state-dir; and Chromium taken offline through DevTools.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import WebSocket from 'ws';

import { devtools, launchChromium, pageServer, reported } from './chromium.js';
import {
  eventually,
  metrics,
  once,
  push,
  Queue,
  scope,
  TEST_TIMEOUT,
  user,
} from './harness.js';

const limit = { timeout: TEST_TIMEOUT };

// How long clients coming back after a restart may take to get everything.
const PATIENCE_LONG = 20_000;

// Many clients from one address, connecting again and again: herald's per-address caps are meant
// for the open internet, not for a test where everyone is 127.0.0.1. Pushes are not rate limited
// either, so that every push is accepted and every expected notification is due.
const UNLIMITED = [
  '--max-connections-per-ip',
  '0',
  '--connection-rate-per-ip',
  '0',
  '--user-rate',
  '0',
];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const uniform = (lo, hi) => lo + Math.random() * (hi - lo);

// An offset is opaque to clients, but the contract says `<epoch hex>-<seq>`, seq counting every
// accepted push: the tests read it to check the order and the epoch.
function parseOffset(offset) {
  const m = /^([0-9a-f]+)-(\d+)$/.exec(offset);
  assert.ok(m, `an offset is "<epoch hex>-<seq>": ${JSON.stringify(offset)}`);
  return { epoch: m[1], seq: Number(m[2]) };
}

// POSTs `body` to the control API's `path`; `{ status, body }`, or `{ status: 0, error }` when the
// request did not get through at all (herald is gone).
async function control(base, path, body) {
  try {
    const res = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
    return { status: res.status, body: parsed };
  } catch (error) {
    return { status: 0, error: String(error.cause ?? error) };
  }
}

// `POST /v1/broadcast`; asserts 202 and returns the body (`{ sockets, rateLimited, offset }`).
async function broadcast(base, notification) {
  const res = await control(base, '/v1/broadcast', { notification });
  assert.equal(res.status, 202, `broadcast: ${JSON.stringify(res)}`);
  return res.body;
}

// A raw `/ws` client written as the contract asks of one: it remembers the offset of the last
// notification it saw (or, before any, the one its first `subscribed` answer gave) and
// resubscribes with it on every new connection. `listForm` clients resubscribe with
// `{userIds: [...], offset}`, the others with `{userId, offset}`; the first subscribe of both is
// the old form, a bare user id.
function rawClient(s, userId, { listForm = false } = {}) {
  const c = {
    userId,
    listForm,
    ws: null,
    got: [], // notification data, in arrival order
    offsets: [], // their offsets
    lastOffset: null,
    answers: [], // every `subscribed` answer's data
    closes: [], // the close code of every connection that had opened
    unexpected: [], // any other message
    drops: 0,
    trace: [], // the latest goings-on, shown when the client's deliveries are wrong
  };
  s.defer(() => c.ws?.terminate());
  let connection = 0;
  const note = (what) => {
    c.trace.push(`#${connection} ${what}`);
    if (c.trace.length > 40) c.trace.shift();
  };

  const subscribe = () => {
    if (c.lastOffset === null) return { event: 'subscribe', data: userId };
    const data = listForm
      ? { userIds: [userId], offset: c.lastOffset }
      : { userId, offset: c.lastOffset };
    return { event: 'subscribe', data };
  };

  // One connection: resolves with its `subscribed` answer, rejects if it closes first.
  const connectOnce = (wsUrl) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`${wsUrl.replace(/^http/, 'ws')}/ws`);
      c.ws = ws;
      connection += 1;
      let opened = false;
      // A refused or killed connection is seen as its close.
      ws.on('error', () => {});
      ws.on('open', () => {
        opened = true;
        const message = subscribe();
        note(`subscribe ${JSON.stringify(message.data)}`);
        ws.send(JSON.stringify(message));
      });
      ws.on('close', (code) => {
        if (opened) c.closes.push(code);
        if (opened) note(`closed ${code}`);
        reject(new Error(`closed with ${code} before its subscribed answer`));
      });
      ws.on('message', (raw) => {
        const m = JSON.parse(raw.toString());
        if (m.event === 'notification') {
          note(`notification seq ${m.data.seq} at ${m.offset}`);
          c.got.push(m.data);
          c.offsets.push(m.offset);
          c.lastOffset = m.offset;
        } else if (m.event === 'subscribed') {
          note(`subscribed at ${m.data.offset}, recovered ${m.data.recovered}`);
          c.answers.push(m.data);
          // Before any notification, or once the old offset is no use, the head is where this
          // client stands. (A notification that came on this connection before the answer is
          // not after the head, so nothing is skipped.)
          if (c.lastOffset === null || m.data.recovered === false) c.lastOffset = m.data.offset;
          resolve(m.data);
        } else {
          c.unexpected.push(m);
        }
      });
    });

  // Connects and (re)subscribes, retrying every `retryMs` while herald is away (restarting),
  // until `deadline`; resolves with the `subscribed` answer.
  c.connect = async (wsUrl, { deadline = Date.now() + 30_000, retryMs = 250 } = {}) => {
    for (;;) {
      try {
        return await connectOnce(wsUrl);
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`${userId}: ${e.message}`);
        await sleep(retryMs);
      }
    }
  };

  // Kills the TCP connection under the WebSocket: no close frame, as when a network goes away.
  c.kill = () => {
    c.drops += 1;
    note('killed');
    c.ws._socket.destroy();
  };
  return c;
}

// A socket.io-client client as a front end writes it with connection state recovery: it
// subscribes on `connect` unless the session was recovered (then its subscriptions came back with
// it). Records what it got, each `connect`'s `socket.recovered`, and each disconnect's reason.
function sioClient(s, wsUrl, userId, opts = {}) {
  const socket = s.io(wsUrl, { transports: ['websocket'], ...opts });
  const c = {
    userId,
    socket,
    got: [],
    offsets: [],
    ids: [], // socket.id at each connect
    recovered: [], // socket.recovered at each connect
    answers: [],
    disconnects: [],
    connectErrors: 0,
    drops: 0,
  };
  socket.on('connect', () => {
    c.ids.push(socket.id);
    c.recovered.push(socket.recovered);
    if (!socket.recovered) socket.emit('subscribe', userId);
  });
  socket.on('subscribed', (data, offset) => c.answers.push({ data, offset }));
  socket.on('notification', (n, offset) => {
    c.got.push(n);
    c.offsets.push(offset);
  });
  socket.on('disconnect', (reason) => c.disconnects.push(reason));
  socket.on('connect_error', () => (c.connectErrors += 1));

  // Kills the TCP connection under the engine's WebSocket transport (the `ws` package in Node):
  // socket.io-client sees a "transport close" and reconnects by itself, sending its session id
  // and the last offset it recorded.
  c.kill = () => {
    c.drops += 1;
    socket.io.engine.transport.ws._socket.destroy();
  };
  return c;
}

// Runs `fn` over `items`, `width` at a time.
async function inBatches(items, width, fn) {
  for (let i = 0; i < items.length; i += width) {
    await Promise.all(items.slice(i, i + width).map(fn));
  }
}

// Checks that every client got exactly `expected(c)` (the `seq` of the notifications addressed
// to it, in push order) and then the sentinel: counts what was lost, duplicated, out of order or
// not addressed to it over all clients, with the first few differences to show.
// A push in `uncertain` (its answer never came) may be there or not, but at most once.
function checkDeliveries(clients, expected, uncertain = new Set()) {
  const totals = { lost: 0, duplicated: 0, misdelivered: 0, outOfOrder: 0, clientsWrong: 0 };
  const examples = [];
  for (const c of clients) {
    const want = expected(c);
    const end = c.got.findIndex((n) => n.sentinel);
    const all = (end === -1 ? c.got : c.got.slice(0, end)).map((n) => n.seq);
    const wanted = new Set(want);
    const counts = new Map();
    for (const seq of all) counts.set(seq, (counts.get(seq) ?? 0) + 1);
    const got = all.filter((seq) => !uncertain.has(seq));
    const lost = want.filter((seq) => !counts.has(seq));
    const duplicated = [...counts].filter(([, n]) => n > 1).map(([seq]) => seq);
    const misdelivered = got.filter((seq) => !wanted.has(seq));
    const inOrder = JSON.stringify(got) === JSON.stringify(want);
    totals.lost += lost.length;
    totals.duplicated += duplicated.length;
    totals.misdelivered += misdelivered.length;
    if (!inOrder && lost.length + duplicated.length + misdelivered.length === 0) {
      totals.outOfOrder += 1;
    }
    // The offsets a client sees only ever grow.
    const seqs = c.offsets.map((o) => parseOffset(o).seq);
    if (seqs.some((seq, i) => i > 0 && seq <= seqs[i - 1])) totals.outOfOrder += 1;
    if (!inOrder || end === -1) {
      totals.clientsWrong += 1;
      if (examples.length < 3) {
        examples.push({
          client: c.userId,
          sentinel: end !== -1,
          lost,
          duplicated,
          misdelivered,
          got,
          want,
          drops: c.drops,
          trace: c.trace,
        });
      }
    }
  }
  assert.deepEqual(
    totals,
    { lost: 0, duplicated: 0, misdelivered: 0, outOfOrder: 0, clientsWrong: 0 },
    JSON.stringify(examples),
  );
}

test(
  'churn: 1,000 clients killed and reconnecting while 2,050 pushes go on lose nothing',
  { timeout: 180_000 },
  async (t) => {
    const RAW = 500;
    const SIO = 500;
    const UNICASTS = 2_000;
    const BROADCASTS = 50;
    // Pushes, and kills, happen over this long; each client stays up 0-10 s, is killed, and comes
    // back 0-30 s later, again and again until the pushes stop. The last ones are back about
    // 30 s after that: the whole test takes about 70 s.
    const PUSH_PHASE = 30_000;
    const MAX_UP = 10_000;
    const MAX_DOWN = 30_000;
    const started = Date.now();

    const s = scope(t);
    const herald = await s.herald({ args: ['--workers', '4', ...UNLIMITED] });

    const raws = Array.from({ length: RAW }, (_, i) =>
      rawClient(s, `c-raw-${i}`, { listForm: i % 2 === 1 }),
    );
    // socket.io-client waits `reconnectionDelay × 2^attempt`, moved by up to
    // `randomizationFactor` of itself either way, at most `reconnectionDelayMax`: with 15 s and a
    // factor of 1 its first attempt comes 1.5-30 s after the drop (its backoff spreads it in
    // bands over that range), a second one, if ever, at most 30 s later.
    const sios = Array.from({ length: SIO }, (_, i) =>
      sioClient(s, herald.wsUrl, `c-sio-${i}`, {
        reconnectionDelay: 15_000,
        reconnectionDelayMax: 30_000,
        randomizationFactor: 1,
      }),
    );
    const clients = [...raws, ...sios];

    // Everyone connected and subscribed before the first push: from then on each push is due to
    // its user's client, whatever happens to the connection.
    await inBatches(raws, 50, (c) => c.connect(herald.wsUrl));
    await inBatches(sios, 50, (c) =>
      eventually(`${c.userId} subscribed`, () => c.answers.length === 1, 30_000),
    );
    const connected = Date.now();

    // The driver: one push at a time, evenly paced, broadcasts spread among the unicasts. Each
    // notification carries its own `seq`, and the order of their offsets is the push order.
    const TOTAL = UNICASTS + BROADCASTS;
    const isBroadcast = new Set(
      Array.from({ length: BROADCASTS }, (_, k) => Math.floor(((k + 0.5) * TOTAL) / BROADCASTS)),
    );
    const pushes = []; // { seq, to ('*' for everyone), offset }
    const pushStart = Date.now();
    const dropsUntil = pushStart + PUSH_PHASE;
    const driver = (async () => {
      for (let seq = 0; seq < TOTAL; seq++) {
        const wait = pushStart + (seq * PUSH_PHASE) / TOTAL - Date.now();
        if (wait > 0) await sleep(wait);
        if (isBroadcast.has(seq)) {
          const body = await broadcast(herald.control, { type: 'CHURN', seq, to: '*' });
          assert.equal(body.rateLimited, 0, JSON.stringify(body));
          pushes.push({ seq, to: '*', offset: body.offset });
        } else {
          const to = clients[Math.floor(Math.random() * clients.length)].userId;
          const body = await push(herald.control, to, { type: 'CHURN', seq, to });
          pushes.push({ seq, to, offset: body.offset });
        }
      }
    })();

    // Each client's life: up a while, killed, back a while later; kills stop with the pushes.
    const churn = async (c) => {
      for (;;) {
        await sleep(uniform(0, MAX_UP));
        if (Date.now() >= dropsUntil) return;
        if (c.socket) {
          const back = once(c.socket, 'connect', MAX_DOWN + 30_000);
          c.kill();
          await back;
        } else {
          c.kill();
          await sleep(uniform(0, MAX_DOWN));
          await c.connect(herald.wsUrl);
        }
      }
    };
    await Promise.all([driver, ...clients.map(churn)]);
    const settled = Date.now();

    // Offsets: one epoch, and one more per accepted push, so the offsets are the push order.
    const offsets = pushes.map((p) => parseOffset(p.offset));
    assert.equal(new Set(offsets.map((o) => o.epoch)).size, 1, 'one epoch');
    for (let i = 1; i < offsets.length; i++) {
      assert.equal(offsets[i].seq, offsets[i - 1].seq + 1, `offsets of pushes ${i - 1} and ${i}`);
    }

    // Everyone is back. A last broadcast marks the end: what a client got before it is all it
    // will ever get of the run, so no quiet period is needed to count duplicates.
    const sentinel = await broadcast(herald.control, { type: 'CHURN', sentinel: true });
    assert.equal(sentinel.sockets, RAW + SIO, 'every client is connected again');
    await eventually(
      'every client got the closing broadcast',
      () => clients.every((c) => c.got.some((n) => n.sentinel)),
      30_000,
    );

    const byUser = new Map(clients.map((c) => [c.userId, []]));
    for (const p of pushes) {
      if (p.to === '*') for (const list of byUser.values()) list.push(p.seq);
      else byUser.get(p.to).push(p.seq);
    }
    checkDeliveries(clients, (c) => byUser.get(c.userId));

    // Every comeback recovered: raw resubscribes said `recovered: true`, socket.io-client
    // reported `socket.recovered` with the same socket id.
    const rawDrops = raws.reduce((n, c) => n + c.drops, 0);
    const sioDrops = sios.reduce((n, c) => n + c.drops, 0);
    const rawNotRecovered = raws.flatMap((c) =>
      c.answers.slice(1).filter((a) => a.recovered !== true).map((a) => [c.userId, a]),
    );
    assert.deepEqual(rawNotRecovered, [], 'every raw resubscribe was recovered');
    assert.equal(
      raws.reduce((n, c) => n + c.answers.length - 1, 0),
      rawDrops,
      'a resubscribe per drop',
    );
    for (const c of raws) {
      assert.deepEqual(c.unexpected, [], c.userId);
      // Each answer names the user(s) in the form they were asked for.
      for (const a of c.answers.slice(1)) {
        if (c.listForm) assert.deepEqual(a.userIds, [c.userId], JSON.stringify(a));
        else assert.equal(a.userId, c.userId, JSON.stringify(a));
      }
    }
    const sioNotRecovered = sios.filter((c) => c.recovered.slice(1).some((r) => r !== true));
    assert.deepEqual(
      sioNotRecovered.map((c) => [c.userId, c.recovered]),
      [],
      'every socket.io-client reconnect was recovered',
    );
    assert.equal(
      sios.reduce((n, c) => n + c.recovered.length - 1, 0),
      sioDrops,
      'a reconnect per drop',
    );
    for (const c of sios) {
      assert.equal(new Set(c.ids).size, 1, `${c.userId} kept its socket id: ${c.ids}`);
      assert.ok(
        c.disconnects.every((r) => r === 'transport close'),
        `${c.userId}: ${c.disconnects}`,
      );
      // Recovered sessions do not subscribe again: one answer, from the first connect.
      assert.equal(c.answers.length, 1, c.userId);
    }
    // The drops did overlap pushes: some notifications were handed over on recovery.
    const m = await metrics(herald.control);
    assert.ok(m.herald_replayed_total > 0, 'something was replayed');
    assert.equal(m.herald_recoveries_failed_total, 0);
    assert.ok(rawDrops > RAW && sioDrops > SIO, `raw ${rawDrops}, socket.io ${sioDrops} drops`);

    const secs = (ms) => `${(ms / 1000).toFixed(1)} s`;
    console.log(
      `churn: ${clients.length} clients (${RAW} raw, ${SIO} socket.io), ` +
        `${rawDrops + sioDrops} drops (${rawDrops} raw, ${sioDrops} socket.io), ` +
        `${TOTAL} pushes (${UNICASTS} unicast, ${BROADCASTS} broadcast), ` +
        `${m.herald_replayed_total} replayed, ` +
        `${sios.reduce((n, c) => n + c.connectErrors, 0)} socket.io connect errors; ` +
        `connect ${secs(connected - started)}, churn ${secs(settled - pushStart)}, ` +
        `total ${secs(Date.now() - started)}`,
    );
  },
);

// A free port below the kernel's ephemeral range, for a herald that must come back on the same
// port: while it is down, a hundred clients retrying connections to an ephemeral port could be
// handed that very port as their own source port (a TCP self-connect), and the restarted herald
// would not get it back.
async function fixedPort() {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]);
  } catch {
    // Not Linux: assume its default range.
  }
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = Math.floor(uniform(Math.max(1024, low - 10_000), low));
    const free = await new Promise((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  assert.fail('no free port below the ephemeral range');
}

// Fifty raw and fifty socket.io-client clients on a herald that is stopped (SIGTERM, drained over
// a second) and started again on the same port with `args`. Half of them ("away") lose their
// connection just before a hundred pushes and come back only once herald is stopped, so that
// they miss pushes for certain; the others are closed by the drain and come back at once,
// retrying until herald is up again. Pushes go on after SIGTERM until the control API refuses
// them. Resolves once every client is back and has a closing broadcast, with what happened.
async function restartScenario(s, args) {
  const COUNT = 50;
  const port = await fixedPort();
  const heraldArgs = ['--drain-time', '1s', ...UNLIMITED, ...args];
  const first = await s.herald({ port, args: heraldArgs });

  const raws = Array.from({ length: COUNT }, (_, i) =>
    rawClient(s, `r-raw-${i}`, { listForm: i % 2 === 1 }),
  );
  const sios = Array.from({ length: COUNT }, (_, i) =>
    sioClient(s, first.wsUrl, `r-sio-${i}`, {
      reconnectionDelay: 200,
      reconnectionDelayMax: 1_000,
    }),
  );
  const clients = [...raws, ...sios];
  await Promise.all(raws.map((c) => c.connect(first.wsUrl)));
  await Promise.all(
    sios.map((c) => eventually(`${c.userId} subscribed`, () => c.answers.length === 1)),
  );
  const away = new Set(clients.filter((_, i) => i % 2 === 0));

  // The socket.io-client ones that go away do not reconnect by themselves until herald has
  // stopped; then `socket.connect()`, which sends the session id and offset they kept just as
  // their own reconnection would.
  for (const c of sios) {
    if (away.has(c)) {
      c.socket.io.reconnection(false);
      c.kill();
    }
  }
  // The raw ones that go away come back once herald has stopped; the others 0-1 s after herald
  // closes them, retrying until it is up again.
  let firstStopped;
  const stoppedOnce = new Promise((resolve) => (firstStopped = resolve));
  const rawBack = raws.map((c) => {
    const closed = once(c.ws, 'close', 30_000);
    if (away.has(c)) c.kill();
    return closed
      .then(() => (away.has(c) ? stoppedOnce : sleep(uniform(0, 1_000))))
      .then(() => c.connect(first.wsUrl));
  });
  for (const p of rawBack) p.catch(() => {});
  await eventually('herald sees the clients that went away go', async () => {
    for (const c of away) if ((await user(first.control, c.userId)).online) return false;
    return true;
  });

  const pushes = []; // { seq, to, offset }: the ones accepted (202)
  const uncertain = new Set(); // seqs of pushes whose answer never came
  const refused = new Map(); // seq -> the answer of a push refused (not 202)
  let seq = 0;
  const pushOne = async (base) => {
    const n = seq++;
    const everyone = n % 20 === 0;
    const to = everyone ? '*' : clients[Math.floor(Math.random() * clients.length)].userId;
    const notification = { type: 'R', seq: n, to };
    const res = everyone
      ? await control(base, '/v1/broadcast', { notification })
      : await control(base, `/v1/users/${to}/notifications`, notification);
    if (res.status === 202) pushes.push({ seq: n, to, offset: res.body.offset });
    else if (res.status === 0) uncertain.add(n);
    else refused.set(n, res);
    return res;
  };
  for (let i = 0; i < 100; i++) {
    const res = await pushOne(first.control);
    assert.equal(res.status, 202, JSON.stringify(res));
  }
  const beforeStop = pushes.length;

  // SIGTERM with pushes still coming, until the control API is gone: whatever it accepts is due
  // to the clients, whatever it refuses must reach none. A push whose connection broke may or
  // may not have been taken.
  const stopped = first.stop();
  let refusal;
  for (let refusals = 0; refusals < 200; ) {
    const res = await pushOne(first.control);
    if (res.status === 202) continue;
    refusal = res;
    refusals += 1;
    if (res.status === 0) break;
  }
  const exit = await stopped;
  assert.deepEqual(exit, { code: 0, signal: null }, 'herald exits cleanly on SIGTERM');
  const acceptedAfterSigterm = pushes.length - beforeStop;

  const second = await s.herald({ port, args: heraldArgs });
  firstStopped();
  for (const c of sios) {
    if (away.has(c)) {
      c.socket.io.reconnection(true);
      c.socket.connect();
    }
  }
  await Promise.all(rawBack);
  await Promise.all(
    sios.map((c) =>
      eventually(`${c.userId} connected again`, () => c.recovered.length >= 2, PATIENCE_LONG),
    ),
  );
  const sentinel = await broadcast(second.control, { type: 'R', sentinel: true });
  assert.equal(sentinel.sockets, clients.length, 'every client is connected again');
  await eventually(
    'every client got the closing broadcast',
    () => clients.every((c) => c.got.some((n) => n.sentinel)),
    PATIENCE_LONG,
  );
  const byUser = new Map(clients.map((c) => [c.userId, []]));
  for (const p of pushes) {
    if (p.to === '*') for (const list of byUser.values()) list.push(p.seq);
    else byUser.get(p.to).push(p.seq);
  }
  return {
    raws,
    sios,
    clients,
    away,
    pushes,
    byUser,
    uncertain,
    refused,
    refusal,
    acceptedAfterSigterm,
    second,
    firstEpoch: parseOffset(pushes[0].offset).epoch,
    sentinel: parseOffset(sentinel.offset),
  };
}

test('restart with --state-dir: every client recovers what it missed', limit, async (t) => {
  const s = scope(t);
  const stateDir = mkdtempSync(join(tmpdir(), 'herald-state-'));
  // Registered after the scope's own cleanup, so it runs once herald has stopped.
  t.after(() => rmSync(stateDir, { recursive: true, force: true }));
  const r = await restartScenario(s, ['--state-dir', stateDir]);

  // The three ways a restart can lose the thread, checked together so that a failure shows all
  // that went wrong.
  const problems = [];
  // The restarted herald goes on in the same epoch, after the last push it accepted: an offset
  // handed out twice would make a client that saw the first skip the second.
  const last = parseOffset(r.pushes.at(-1).offset);
  if (r.sentinel.epoch !== r.firstEpoch) problems.push('a new epoch after the restart');
  if (r.sentinel.seq <= last.seq) {
    problems.push(
      `offset reused: the restarted herald answered ${r.sentinel.seq} after ${last.seq} ` +
        `had been accepted (${JSON.stringify(r.pushes.slice(-3))})`,
    );
  }
  // A push the control API refused was not taken: no client may get it, then or after the
  // restart (a caller that retries it would otherwise have it delivered twice).
  const gotRefused = r.clients.flatMap((c) =>
    c.got.filter((n) => r.refused.has(n.seq)).map((n) => `${c.userId} got ${n.seq}`),
  );
  if (gotRefused.length > 0) {
    const refused = [...r.refused].filter(([seq]) => gotRefused.some((g) => g.endsWith(` ${seq}`)));
    problems.push(
      `pushes answered ${JSON.stringify(refused)} reached clients: ${gotRefused.slice(0, 5)}...`,
    );
  }
  try {
    checkDeliveries(r.clients, (c) => r.byUser.get(c.userId), r.uncertain);
  } catch (e) {
    problems.push(`deliveries: ${e.message}`);
  }
  assert.deepEqual(problems, []);

  for (const c of r.raws) {
    assert.deepEqual(c.closes, [r.away.has(c) ? 1006 : 1012], `${c.userId}: how it was closed`);
    assert.equal(c.answers.length, 2, c.userId);
    assert.equal(c.answers[1].recovered, true, `${c.userId}: ${JSON.stringify(c.answers[1])}`);
  }
  for (const c of r.sios) {
    assert.deepEqual(c.recovered, [false, true], c.userId);
    assert.equal(c.ids[1], c.ids[0], `${c.userId} kept its socket id`);
    assert.deepEqual(c.disconnects, ['transport close'], c.userId);
  }
  // The clients that were away missed pushes for certain: the restarted herald replayed them.
  const m = await metrics(r.second.control);
  assert.ok(m.herald_replayed_total > 0, 'the restarted herald replayed what was missed');
  console.log(
    `restart with state: ${r.clients.length} clients, ${r.pushes.length} pushes ` +
      `(${r.acceptedAfterSigterm} accepted after SIGTERM, ${r.uncertain.size} unanswered), ` +
      `${m.herald_replayed_total} replayed after the restart; then ${JSON.stringify(r.refusal)}`,
  );
});

test('restart without --state-dir: every client is told it did not recover', limit, async (t) => {
  const s = scope(t);
  const r = await restartScenario(s, []);

  // A new epoch, so no offset of the old one can be honoured.
  assert.notEqual(r.sentinel.epoch, r.firstEpoch, 'a new epoch after the restart');
  for (const c of r.raws) {
    assert.deepEqual(c.closes, [r.away.has(c) ? 1006 : 1012], `${c.userId}: how it was closed`);
    assert.equal(c.answers.length, 2, c.userId);
    assert.equal(c.answers[1].recovered, false, `${c.userId}: ${JSON.stringify(c.answers[1])}`);
    assert.equal(parseOffset(c.answers[1].offset).epoch, r.sentinel.epoch, c.userId);
  }
  for (const c of r.sios) {
    assert.deepEqual(c.recovered, [false, false], c.userId);
    assert.notEqual(c.ids[1], c.ids[0], `${c.userId} has a new socket id`);
    // Not recovered, so it subscribed again, as the front end does.
    assert.equal(c.answers.length, 2, c.userId);
  }
  // Nothing was replayed: since its comeback each client got only the closing broadcast. (What
  // it got before the restart is whatever reached it live.)
  for (const c of r.clients) {
    const fromNewEpoch = c.offsets.filter((o) => parseOffset(o).epoch === r.sentinel.epoch);
    assert.equal(fromNewEpoch.length, 1, `${c.userId}: only the closing broadcast since`);
    assert.ok(c.got.at(-1).sentinel, `${c.userId}: nothing after the closing broadcast`);
  }
  const m = await metrics(r.second.control);
  assert.equal(m.herald_replayed_total, 0);
});

// The page: socket.io-client on its WebSocket transport, recovering as a front end would, and
// reporting to the test. Reports are queued and retried, since the page cannot reach the test's
// server either while the browser is offline; they arrive in order once it is back.
function offlinePage(heraldUrl, userId) {
  return `<!doctype html>
<html>
<head><meta charset="utf-8"><title>herald recovery</title></head>
<body>
<script src="/socket.io.min.js"></script>
<script>
  const outbox = [];
  let sending = false;
  const flush = async () => {
    if (sending) return;
    sending = true;
    while (outbox.length > 0) {
      try {
        await fetch('/report', { method: 'POST', body: outbox[0] });
        outbox.shift();
      } catch {
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    sending = false;
  };
  const report = (kind, data) => {
    outbox.push(JSON.stringify({ kind, data }));
    flush();
  };
  window.addEventListener('error', (e) => report('page-error', String(e.message)));

  const userId = ${JSON.stringify(userId)};
  const socket = io(${JSON.stringify(heraldUrl)}, {
    transports: ['websocket'],
    reconnectionDelay: 500,
    reconnectionDelayMax: 1000,
  });
  socket.on('connect', () => {
    report('connect', { id: socket.id, recovered: socket.recovered });
    if (!socket.recovered) socket.emit('subscribe', userId);
  });
  socket.on('disconnect', (reason) => report('disconnect', reason));
  socket.on('connect_error', (e) => report('connect_error', String(e && e.message)));
  socket.on('subscribed', (data, offset) => report('subscribed', { data, offset }));
  socket.on('notification', (n, offset) => report('notification', { n, offset }));
</script>
</body>
</html>
`;
}

test('Chromium offline 10 s: both pushes arrive once, in order, recovered', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  const userId = 'chr-offline';
  const reports = new Queue('report from the page');
  const server = await pageServer(() => offlinePage(herald.wsUrl, userId), reports);
  s.defer(() => {
    server.close();
    server.closeAllConnections();
  });
  const chromium = launchChromium(`http://127.0.0.1:${server.address().port}/`);
  t.after(() => chromium.close());
  const got = async (kind) => {
    try {
      return await Promise.race([reported(reports, kind, chromium), chromium.spawnFailed]);
    } catch (e) {
      e.message += `\nherald: ${herald.log()}`;
      throw e;
    }
  };

  const first = await got('connect');
  assert.equal(first.recovered, false);
  const subscribed = await got('subscribed');
  assert.equal(subscribed.data.userId, userId);
  assert.equal(subscribed.offset, subscribed.data.offset, 'the offset is the last argument too');

  const cdp = await devtools(chromium);
  t.after(() => cdp.close());
  await cdp.send('Network.enable');
  const network = (offline) =>
    cdp.send('Network.emulateNetworkConditions', {
      offline,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: -1,
    });
  const offlineAt = Date.now();
  await network(true);
  // Chromium closes the page's open WebSocket when it goes offline: herald sees the user go,
  // so the pushes below find no socket and are due only through recovery.
  await eventually(
    'herald sees the page go',
    async () => !(await user(herald.control, userId)).online,
  );
  const sent = [];
  for (const message of ['one', 'two']) {
    const body = await push(herald.control, userId, { type: 'OFFLINE', message });
    assert.equal(body.sockets, 0, `pushed while offline: ${JSON.stringify(body)}`);
    sent.push(body.offset);
    await sleep(1_000);
  }
  await sleep(Math.max(0, offlineAt + 10_000 - Date.now()));
  await network(false);

  // The page reports in order: the drop, then (after any failed attempts while offline) the
  // missed notifications, which socket.io-client hands over before `connect`.
  assert.equal(await got('disconnect'), 'transport close');
  const missed = [await got('notification'), await got('notification')];
  assert.deepEqual(
    missed.map((r) => [r.n.message, r.offset]),
    [
      ['one', sent[0]],
      ['two', sent[1]],
    ],
  );
  const again = await got('connect');
  assert.deepEqual(again, { id: first.id, recovered: true }, 'the same session, recovered');

  // Nothing more of them: the next notification is the one pushed now.
  const body = await push(herald.control, userId, { type: 'OFFLINE', message: 'three' });
  assert.equal(body.sockets, 1);
  const next = await got('notification');
  assert.deepEqual([next.n.message, next.offset], ['three', body.offset]);
});
