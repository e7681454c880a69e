// permessage-deflate (RFC 7692) against the peers that speak it: the `ws` package, socket.io-client
// in Node (which hands its `perMessageDeflate` option to `ws`), and headless Chromium's own
// WebSocket. All three offer `permessage-deflate; client_max_window_bits`; herald answers
// `server_no_context_takeover; client_no_context_takeover`, compresses pushes of at least
// `--deflate-threshold` bytes (1024 by default) and inflates what clients compress. Each test
// checks what the client received against what was pushed, and herald's counters for which
// frames went compressed each way.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import WebSocket from 'ws';

import { openPage } from './chromium.js';
import {
  assertNotification,
  assertRawNotification,
  metrics,
  once,
  parseOffset,
  push,
  recordRaw,
  recordWithOffset,
  scope,
  subscribeRaw,
  TEST_TIMEOUT,
  withoutOffset,
} from './harness.js';

const limit = { timeout: TEST_TIMEOUT };

// What herald answers to every offer these clients make.
const AGREED = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';

// A digest of comments: prose well over the 1 KiB threshold, so it goes out compressed, and partly
// outside ASCII, so that arriving intact covers multi-byte UTF-8 through deflate and back.
const BIG = {
  type: 'DIGEST',
  message: Array.from(
    { length: 40 },
    (_, i) => `Comment ${i} on «your post»: looks great ✓ — see you at the café`,
  ).join('\n'),
  actorId: 'user-9',
  data: { postId: 'p1', commenters: Array.from({ length: 20 }, (_, i) => `user-${i}`) },
};

// Well under the threshold: goes out as a plain frame even to a client that agreed deflate.
const SMALL = {
  type: 'LIKE',
  message: 'Someone liked your post',
  actorId: 'user-9',
  data: { postId: 'p1' },
};

// The counters these tests read, by short name. Each test has its own herald, so they start at 0.
const COUNTERS = {
  deflateWebsockets: 'herald_deflate_websockets',
  received: 'herald_messages_received_total',
  inflated: 'herald_messages_inflated_total',
  deliveries: 'herald_deliveries_total',
  compressed: 'herald_deliveries_compressed_total',
  compressions: 'herald_deflate_compressions_total',
};

// herald's deflate counters now, by the short names of `COUNTERS`.
async function counters(herald) {
  const m = await metrics(herald.control);
  return Object.fromEntries(
    Object.entries(COUNTERS).map(([short, name]) => {
      assert.equal(typeof m[name], 'number', `${name} in /metrics`);
      return [short, m[name]];
    }),
  );
}

// A `ws` WebSocket to herald's `/ws` made with `options`, closed when the test ends; resolves once
// open with the socket, its messages, and the `Sec-WebSocket-Extensions` herald answered
// (`undefined` when it answered none). `ws.extensions` only names the extensions, so the answer's
// parameters are read from the handshake response.
async function rawClient(s, herald, options) {
  const ws = new WebSocket(`${herald.wsUrl.replace(/^http/, 'ws')}/ws`, options);
  s.defer(() => ws.terminate());
  let answered;
  ws.once('upgrade', (res) => (answered = res.headers['sec-websocket-extensions']));
  const messages = recordRaw(ws);
  await once(ws, 'open');
  return { ws, messages, answered };
}

// Pushes `sent` to `userId` over the control API and checks that each of `queues` (raw `/ws`
// messages) receives it next, intact, with the offset the push answered.
async function pushRaw(herald, userId, sent, queues) {
  const pushed = await push(herald.control, userId, sent);
  assert.deepEqual(withoutOffset(pushed), { sockets: queues.length });
  for (const messages of queues) assertRawNotification(await messages.next(), sent, pushed.offset);
}

test('ws, threshold 0: no context takeover agreed, compressed both ways', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  // threshold 0: `ws` compresses every message it sends, the subscribe included.
  const { ws, messages, answered } = await rawClient(s, herald, {
    perMessageDeflate: { threshold: 0 },
  });
  assert.equal(ws.extensions, 'permessage-deflate');
  assert.equal(answered, AGREED);

  await subscribeRaw(ws, messages, 'u1');
  assert.deepEqual(await counters(herald), {
    deflateWebsockets: 1,
    received: 1,
    inflated: 1,
    deliveries: 0,
    compressed: 0,
    compressions: 0,
  });

  await pushRaw(herald, 'u1', BIG, [messages]);
  await pushRaw(herald, 'u1', SMALL, [messages]);
  assert.deepEqual(await counters(herald), {
    deflateWebsockets: 1,
    received: 1,
    inflated: 1,
    deliveries: 2,
    compressed: 1,
    compressions: 1,
  });
});

test('one compressor run per push for 3 deflate clients; plain to a 4th', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  const deflating = [];
  for (let i = 0; i < 3; i++) {
    const c = await rawClient(s, herald, { perMessageDeflate: { threshold: 0 } });
    assert.equal(c.answered, AGREED);
    await subscribeRaw(c.ws, c.messages, 'many');
    deflating.push(c);
  }
  // No offer, so no answer: `ws` would fail the handshake on an extension it did not offer, and
  // the connection on a frame with RSV1 set.
  const plain = await rawClient(s, herald, { perMessageDeflate: false });
  assert.equal(plain.ws.extensions, '');
  assert.equal(plain.answered, undefined);
  await subscribeRaw(plain.ws, plain.messages, 'many');

  const before = await counters(herald);
  assert.equal(before.deflateWebsockets, 3);
  assert.equal(before.inflated, 3, 'the three deflate clients compressed their subscribe');
  assert.equal(before.received, 4);

  await pushRaw(herald, 'many', BIG, [...deflating.map((c) => c.messages), plain.messages]);
  const after = await counters(herald);
  // One run per push on each worker holding deflate recipients: each worker has its compressor.
  const runs = after.compressions - before.compressions;
  const workers = (await metrics(herald.control)).herald_workers;
  assert.ok(runs >= 1 && runs <= workers, `one compressor run per worker, got ${runs}`);
  assert.equal(after.compressed - before.compressed, 3, 'compressed to the deflate clients only');
  assert.equal(after.deliveries - before.deliveries, 4);
});

test('ws: server_max_window_bits=15 is echoed, a smaller window declined', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  // herald compresses with a 2^15 window only: it accepts an offer of 15 and repeats it in the
  // answer (RFC 7692 §7.1.2.1) ...
  const fifteen = await rawClient(s, herald, {
    perMessageDeflate: { threshold: 0, serverMaxWindowBits: 15 },
  });
  assert.equal(fifteen.answered, `${AGREED}; server_max_window_bits=15`);
  assert.equal(fifteen.ws.extensions, 'permessage-deflate');
  await subscribeRaw(fifteen.ws, fifteen.messages, 'w');

  // ... and declines a smaller one, a window it could not keep to (§7), leaving the connection
  // uncompressed but working.
  const ten = await rawClient(s, herald, {
    perMessageDeflate: { threshold: 0, serverMaxWindowBits: 10 },
  });
  assert.equal(ten.answered, undefined);
  assert.equal(ten.ws.extensions, '');
  await subscribeRaw(ten.ws, ten.messages, 'w');

  await pushRaw(herald, 'w', BIG, [fifteen.messages, ten.messages]);
  assert.deepEqual(await counters(herald), {
    deflateWebsockets: 1,
    received: 2,
    inflated: 1,
    deliveries: 2,
    compressed: 1,
    compressions: 1,
  });
});

// Connects a Socket.IO socket with `opts` that subscribes to `userId` on `connect`; resolves
// once subscribed, with the socket and its notification queue (`recordWithOffset`).
async function subscribedSocket(s, herald, userId, opts) {
  const socket = s.io(herald.wsUrl, opts);
  const subscribed = recordWithOffset(socket, 'subscribed');
  const notifications = recordWithOffset(socket, 'notification');
  socket.on('connect', () => socket.emit('subscribe', userId));
  assert.deepEqual(await subscribed.next(), {
    userId,
    socketId: socket.id,
    offset: subscribed.lastOffset,
  });
  assert.equal(socket.io.engine.transport.name, 'websocket');
  return { socket, notifications };
}

test('socket.io-client, websocket, threshold 0: compressed both ways', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  // engine.io-client's Node transport picks `perMessageDeflate` out of its options and passes it
  // to `new WebSocket(uri, protocols, opts)` from `ws`; its own size check (`len < threshold`)
  // then never holds, and every packet is sent with `compress: true`.
  const { notifications } = await subscribedSocket(s, herald, 'sio', {
    transports: ['websocket'],
    perMessageDeflate: { threshold: 0 },
  });

  const subscribed = await counters(herald);
  assert.equal(subscribed.deflateWebsockets, 1);
  // The CONNECT packet and the subscribe at least, and any pong since: all compressed.
  assert.ok(subscribed.received >= 2, JSON.stringify(subscribed));
  assert.equal(subscribed.inflated, subscribed.received);

  const big = await push(herald.control, 'sio', BIG);
  assert.deepEqual(withoutOffset(big), { sockets: 1 });
  assertNotification(await notifications.next(), BIG);
  const small = await push(herald.control, 'sio', SMALL);
  assert.deepEqual(withoutOffset(small), { sockets: 1 });
  assertNotification(await notifications.next(), SMALL);
  assert.deepEqual(notifications.offsets, [big.offset, small.offset]);
  const pushed = await counters(herald);
  assert.equal(pushed.deliveries, 2);
  assert.equal(pushed.compressed, 1, 'only the big push went out compressed');
  assert.equal(pushed.compressions, 1);
});

test("socket.io-client's defaults: deflate agreed, small packets sent plain", limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  // engine.io-client defaults to `perMessageDeflate: { threshold: 1024 }`, so it offers deflate
  // without being asked, and compresses nothing it sends below 1 KiB: none of its packets here.
  const { notifications } = await subscribedSocket(s, herald, 'sio-default', {
    transports: ['websocket'],
  });
  const subscribed = await counters(herald);
  assert.equal(subscribed.deflateWebsockets, 1);
  assert.ok(subscribed.received >= 2, JSON.stringify(subscribed));
  assert.equal(subscribed.inflated, 0);

  const big = await push(herald.control, 'sio-default', BIG);
  assert.deepEqual(withoutOffset(big), { sockets: 1 });
  assertNotification(await notifications.next(), BIG);
  assert.equal(notifications.lastOffset, big.offset);
  assert.equal((await counters(herald)).compressed, 1);
});

// A page that opens a native WebSocket on herald's `/ws`, subscribes, and reports the
// `subscribed` reply's data (with the extensions Chromium agreed) and every other message whole
// (a notification with its offset).
function rawPage(wsUrl, userId) {
  return `<!doctype html>
<html>
<head><meta charset="utf-8"><title>herald /ws</title></head>
<body>
<script>
  const report = (kind, data) =>
    fetch('/report', { method: 'POST', body: JSON.stringify({ kind, data }) });
  window.addEventListener('error', (e) => report('page-error', String(e.message)));

  const userId = ${JSON.stringify(userId)};
  const ws = new WebSocket(${JSON.stringify(wsUrl)});
  ws.onopen = () => ws.send(JSON.stringify({ event: 'subscribe', data: userId }));
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    report(m.event, m.event === 'subscribed' ? { ...m.data, extensions: ws.extensions } : m);
  };
  ws.onclose = (e) => report('close', { code: e.code, reason: e.reason });
</script>
</body>
</html>
`;
}

// A page that runs socket.io-client on the websocket transport only, subscribes, and reports the
// arguments of the `subscribed` reply and of every notification (the data, then the offset).
function socketIoPage(heraldUrl, userId) {
  return `<!doctype html>
<html>
<head><meta charset="utf-8"><title>herald Socket.IO</title></head>
<body>
<script src="/socket.io.min.js"></script>
<script>
  const report = (kind, data) =>
    fetch('/report', { method: 'POST', body: JSON.stringify({ kind, data }) });
  window.addEventListener('error', (e) => report('page-error', String(e.message)));

  const socket = io(${JSON.stringify(heraldUrl)}, { transports: ['websocket'] });
  socket.on('connect', () => socket.emit('subscribe', ${JSON.stringify(userId)}));
  socket.on('connect_error', (e) => report('connect_error', String(e && e.message)));
  socket.on('subscribed', (...args) => report('subscribed', args));
  socket.on('notification', (...args) => report('notification', args));
</script>
</body>
</html>
`;
}

test('Chromium, native WebSocket on /ws: deflate agreed, pushes intact', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  const wsUrl = `${herald.wsUrl.replace(/^http/, 'ws')}/ws`;
  const got = await openPage(t, s, herald, rawPage(wsUrl, 'chr'));

  const { extensions, ...subscribed } = await got('subscribed');
  assert.equal(typeof subscribed.socketId, 'string');
  assert.deepEqual(withoutOffset(subscribed), { userId: 'chr', socketId: subscribed.socketId });
  // Chromium exposes the agreed extensions as herald wrote them.
  assert.equal(extensions, AGREED);
  // Chromium compresses every message it sends, however small: the subscribe arrived compressed.
  assert.deepEqual(await counters(herald), {
    deflateWebsockets: 1,
    received: 1,
    inflated: 1,
    deliveries: 0,
    compressed: 0,
    compressions: 0,
  });

  const big = await push(herald.control, 'chr', BIG);
  assert.deepEqual(withoutOffset(big), { sockets: 1 });
  assertRawNotification(await got('notification'), BIG, big.offset);
  const small = await push(herald.control, 'chr', SMALL);
  assert.deepEqual(withoutOffset(small), { sockets: 1 });
  assertRawNotification(await got('notification'), SMALL, small.offset);
  const pushed = await counters(herald);
  assert.equal(pushed.deliveries, 2);
  assert.equal(pushed.compressed, 1, 'only the big push went out compressed');
});

test('Chromium, socket.io-client on websocket: deflate, big push intact', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  const got = await openPage(t, s, herald, socketIoPage(herald.wsUrl, 'chr-sio'));

  const [subscribed, subscribedOffset, ...more] = await got('subscribed');
  assert.deepEqual(more, [], 'the offset is the last argument');
  parseOffset(subscribedOffset);
  assert.equal(typeof subscribed.socketId, 'string');
  assert.deepEqual(subscribed, {
    userId: 'chr-sio',
    socketId: subscribed.socketId,
    offset: subscribedOffset,
  });
  const connected = await counters(herald);
  // The browser's WebSocket negotiates by itself; the client's `perMessageDeflate` is Node's only.
  assert.equal(connected.deflateWebsockets, 1);
  assert.ok(connected.received >= 2, JSON.stringify(connected));
  // Chromium compresses every message, even Socket.IO's two-byte CONNECT packet `40`.
  assert.equal(connected.inflated, connected.received, 'Chromium compressed every packet');

  const big = await push(herald.control, 'chr-sio', BIG);
  assert.deepEqual(withoutOffset(big), { sockets: 1 });
  const [notification, ...rest] = await got('notification');
  assertNotification(notification, BIG);
  assert.deepEqual(rest, [big.offset], 'the offset pushed, as the last argument');
  const pushed = await counters(herald);
  assert.equal(pushed.compressed, 1);
  assert.equal(pushed.deflateWebsockets, 1);
});

test('--deflate false: offers declined, the big push arrives plain', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald({ args: ['--deflate', 'false'] });
  const { ws, messages, answered } = await rawClient(s, herald, {
    perMessageDeflate: { threshold: 0 },
  });
  assert.equal(answered, undefined);
  assert.equal(ws.extensions, '');
  await subscribeRaw(ws, messages, 'off');
  // Declined on Socket.IO's WebSocket too.
  const { notifications } = await subscribedSocket(s, herald, 'off', {
    transports: ['websocket'],
    perMessageDeflate: { threshold: 0 },
  });

  const big = await push(herald.control, 'off', BIG);
  assert.deepEqual(withoutOffset(big), { sockets: 2 });
  assertRawNotification(await messages.next(), BIG, big.offset);
  assertNotification(await notifications.next(), BIG);
  assert.equal(notifications.lastOffset, big.offset);
  const pushed = await counters(herald);
  assert.equal(pushed.deflateWebsockets, 0);
  assert.equal(pushed.inflated, 0);
  assert.equal(pushed.deliveries, 2);
  assert.equal(pushed.compressed, 0);
  assert.equal(pushed.compressions, 0);
});
