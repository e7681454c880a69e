// herald's Socket.IO v5 / Engine.IO v4 endpoint, driven by the socket.io-client front ends use.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  assertNotification,
  assertRawNotification,
  eventually,
  notificationsUntil,
  once,
  parseOffset,
  push,
  record,
  recordAll,
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

// Connects a socket that subscribes to `userId` on every `connect`, as the front end does, and
// resolves once the first `subscribed` arrives, with the socket and its notification queue
// (`recordWithOffset`: each notification comes with its offset as a last argument).
async function subscribedClient(s, herald, userId, opts) {
  const socket = s.io(herald.wsUrl, opts);
  const subscribed = recordWithOffset(socket, 'subscribed');
  const notifications = recordWithOffset(socket, 'notification');
  socket.on('connect', () => socket.emit('subscribe', userId));
  const data = await subscribed.next();
  // The offset in the data is the one sent as the last argument.
  assert.deepEqual(data, {
    userId: String(userId),
    socketId: socket.id,
    offset: subscribed.lastOffset,
  });
  return { socket, subscribed, notifications };
}

test('default transports: polling, then websocket; no push lost or repeated', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  const { socket, subscribed, notifications } = await subscribedClient(s, herald, 'u1');
  assert.ok(socket.connected);

  const pushed = await push(herald.control, 'u1', LIKE);
  assert.deepEqual(withoutOffset(pushed), { sockets: 1 });
  assertNotification(await notifications.next(), LIKE);
  assert.equal(notifications.lastOffset, pushed.offset, 'delivered with the offset pushed');
  // The first push of this herald's epoch: one past the head the subscribe answered.
  const head = parseOffset(subscribed.lastOffset);
  assert.deepEqual(parseOffset(pushed.offset), { epoch: head.epoch, seq: head.seq + 1 });

  const engine = socket.io.engine;
  if (engine.transport.name !== 'websocket') await once(engine, 'upgrade');
  assert.equal(engine.transport.name, 'websocket');

  const after = { type: 'TEST', message: 'after the upgrade' };
  const afterPushed = await push(herald.control, 'u1', after);
  assert.deepEqual(withoutOffset(afterPushed), { sockets: 1 });
  const sentinel = await push(herald.control, 'u1', { message: 'sentinel' });
  assert.deepEqual(withoutOffset(sentinel), { sockets: 1 });
  const before = await notificationsUntil(notifications, 'sentinel');
  assert.equal(
    before.length,
    1,
    `exactly one notification before the sentinel: ${JSON.stringify(before)}`,
  );
  assertNotification(before[0], after);
  assert.deepEqual(notifications.offsets, [pushed.offset, afterPushed.offset, sentinel.offset]);
});

test('websocket only', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  const { socket, notifications } = await subscribedClient(s, herald, 'u-ws', {
    transports: ['websocket'],
  });
  assert.equal(socket.io.engine.transport.name, 'websocket');

  assert.deepEqual(withoutOffset(await push(herald.control, 'u-ws', LIKE)), { sockets: 1 });
  assertNotification(await notifications.next(), LIKE);
  await push(herald.control, 'u-ws', { message: 'sentinel' });
  assert.deepEqual(await notificationsUntil(notifications, 'sentinel'), []);
});

test('polling only: pushes arrive one poll after another', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  const { socket, notifications } = await subscribedClient(s, herald, 'u-poll', {
    transports: ['polling'],
    upgrade: false,
  });

  assert.deepEqual(withoutOffset(await push(herald.control, 'u-poll', LIKE)), { sockets: 1 });
  assertNotification(await notifications.next(), LIKE);
  // A second push has to ride on the next poll request.
  const second = { type: 'TEST', message: 'second' };
  assert.deepEqual(withoutOffset(await push(herald.control, 'u-poll', second)), { sockets: 1 });
  assertNotification(await notifications.next(), second);
  await push(herald.control, 'u-poll', { message: 'sentinel' });
  assert.deepEqual(await notificationsUntil(notifications, 'sentinel'), []);
  assert.equal(socket.io.engine.transport.name, 'polling');
});

test('three clients of one user each get a push once', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  const clients = await Promise.all(
    ['polling', 'websocket', undefined].map((only) =>
      subscribedClient(s, herald, 'u-many', only && { transports: [only] }),
    ),
  );
  assert.equal(new Set(clients.map((c) => c.socket.id)).size, 3, 'three distinct socket ids');
  assert.deepEqual(await user(herald.control, 'u-many'), {
    userId: 'u-many',
    online: true,
    sockets: 3,
    addresses: ['127.0.0.1'],
  });

  const pushed = await push(herald.control, 'u-many', LIKE);
  assert.deepEqual(withoutOffset(pushed), { sockets: 3 });
  const sentinel = await push(herald.control, 'u-many', { message: 'sentinel' });
  assert.deepEqual(withoutOffset(sentinel), { sockets: 3 });
  for (const { notifications } of clients) {
    const before = await notificationsUntil(notifications, 'sentinel');
    assert.equal(before.length, 1, JSON.stringify(before));
    assertNotification(before[0], LIKE);
    assert.deepEqual(notifications.offsets, [pushed.offset, sentinel.offset]);
  }
});

test('subscribe acks; a numeric user id becomes its decimal string', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  const socket = s.io(herald.wsUrl);
  const subscribed = recordWithOffset(socket, 'subscribed');
  const notifications = recordWithOffset(socket, 'notification');
  await once(socket, 'connect');

  // The ack's data is the `subscribed` event's, offset included.
  const ack = await socket.timeout(10_000).emitWithAck('subscribe', 'u');
  assert.deepEqual(withoutOffset(ack), { userId: 'u', socketId: socket.id });
  assert.deepEqual(await subscribed.next(), {
    userId: 'u',
    socketId: socket.id,
    offset: subscribed.lastOffset,
  });
  assert.equal(ack.offset, subscribed.lastOffset);

  const numeric = await socket.timeout(10_000).emitWithAck('subscribe', 123);
  assert.deepEqual(withoutOffset(numeric), { userId: '123', socketId: socket.id });
  assert.deepEqual(await subscribed.next(), {
    userId: '123',
    socketId: socket.id,
    offset: subscribed.lastOffset,
  });
  assert.equal(numeric.offset, subscribed.lastOffset);

  const pushed = await push(herald.control, '123', LIKE);
  assert.deepEqual(withoutOffset(pushed), { sockets: 1 });
  assertNotification(await notifications.next(), LIKE);
  assert.equal(notifications.lastOffset, pushed.offset);
});

test('unsubscribe stops delivery to that user and keeps the others', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  const socket = s.io(herald.wsUrl);
  const notifications = recordWithOffset(socket, 'notification');
  const unsubscribed = record(socket, 'unsubscribed');
  await once(socket, 'connect');
  for (const id of ['a', 'b', 'c']) await socket.timeout(10_000).emitWithAck('subscribe', id);

  socket.emit('unsubscribe', 'a');
  assert.deepEqual(await unsubscribed.next(), { userId: 'a' });
  assert.deepEqual(withoutOffset(await push(herald.control, 'a', { message: 'to a' })), {
    sockets: 0,
  });
  const toB = await push(herald.control, 'b', { message: 'to b' });
  assert.deepEqual(withoutOffset(toB), { sockets: 1 });
  const before = await notificationsUntil(notifications, 'to b');
  assert.deepEqual(before, [], 'nothing arrives for the unsubscribed user');
  assert.deepEqual(notifications.offsets, [toB.offset]);

  // The same with an ack callback.
  const ack = await socket.timeout(10_000).emitWithAck('unsubscribe', 'c');
  assert.equal(ack?.userId, 'c', `ack ${JSON.stringify(ack)}`);
  assert.deepEqual(await unsubscribed.next(), { userId: 'c' });
  assert.deepEqual(withoutOffset(await push(herald.control, 'c', { message: 'to c' })), {
    sockets: 0,
  });
  assert.deepEqual(await user(herald.control, 'b'), {
    userId: 'b',
    online: true,
    sockets: 1,
    addresses: ['127.0.0.1'],
  });
});

test('an invalid subscribe gets an error event; the socket stays usable', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  const socket = s.io(herald.wsUrl);
  const received = recordAll(socket);
  await once(socket, 'connect');

  for (const bad of ['', {}]) {
    socket.emit('subscribe', bad);
    const { event, args } = await received.next();
    assert.equal(event, 'error', `subscribe(${JSON.stringify(bad)}) answered ${event}`);
    assert.equal(args.length, 1, JSON.stringify(args));
    const [data] = args;
    assert.equal(typeof data?.message, 'string', JSON.stringify(data));
    assert.notEqual(data.message, '');
  }
  // Unknown events are ignored: the next answer is the one to the valid subscribe, its offset
  // both in its data and as its last argument.
  socket.emit('no-such-event', 'x');
  socket.emit('subscribe', 'ok');
  const answer = await received.next();
  const offset = answer.args?.at(-1);
  parseOffset(offset, `the last argument of ${JSON.stringify(answer)}`);
  assert.deepEqual(answer, {
    event: 'subscribed',
    args: [{ userId: 'ok', socketId: socket.id, offset }, offset],
  });
  assert.ok(socket.connected);

  const pushed = await push(herald.control, 'ok', LIKE);
  const { event, args } = await received.next();
  assert.equal(event, 'notification');
  assert.equal(args.length, 2, JSON.stringify(args));
  assertNotification(args[0], LIKE);
  assert.equal(args[1], pushed.offset, 'the notification ends with the offset pushed');
});

// An event herald does not know, emitted with an ack, was ignored, so emitWithAck waited out its
// whole timeout and then rejected. herald answers the ack at once with
// `{ error: 'unknown event' }`, as it answers a refused subscribe; socket.io-client resolves with
// what the server answers.
test('emitWithAck of an unknown event is answered at once with an error', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  const socket = s.io(herald.wsUrl);
  await once(socket, 'connect');

  // Without the answer this rejects with the client's "operation has timed out".
  const answer = await socket.timeout(20_000).emitWithAck('no-such-event', 'x');
  assert.deepEqual(answer, { error: 'unknown event' });
  assert.ok(socket.connected);
});

test('a Socket.IO tab and a raw /ws socket of one user both get a push', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  const tab = await subscribedClient(s, herald, 'u-mixed');
  const ws = await s.ws(herald.wsUrl);
  const raw = recordRaw(ws);
  const rawSubscribed = await subscribeRaw(ws, raw, 'u-mixed');
  assert.notEqual(rawSubscribed.socketId, tab.socket.id);

  const pushed = await push(herald.control, 'u-mixed', LIKE);
  assert.deepEqual(withoutOffset(pushed), { sockets: 2 });
  const sentinel = await push(herald.control, 'u-mixed', { message: 'sentinel' });
  assert.deepEqual(withoutOffset(sentinel), { sockets: 2 });

  const before = await notificationsUntil(tab.notifications, 'sentinel');
  assert.equal(before.length, 1, JSON.stringify(before));
  assertNotification(before[0], LIKE);
  assert.deepEqual(tab.notifications.offsets, [pushed.offset, sentinel.offset]);

  // Both sockets get the same offsets: they are the pushes', not the sockets'.
  const rawBefore = [];
  for (;;) {
    const m = await raw.next();
    assert.equal(m.event, 'notification', JSON.stringify(m));
    if (m.data.message === 'sentinel') {
      assertRawNotification(m, { message: 'sentinel' }, sentinel.offset);
      break;
    }
    rawBefore.push(m);
  }
  assert.equal(rawBefore.length, 1, JSON.stringify(rawBefore));
  assertRawNotification(rawBefore[0], LIKE, pushed.offset);
});

test('the front end reconnects and resubscribes when herald restarts', limit, async (t) => {
  const s = scope(t);
  const first = await s.herald();
  const userId = 'user-123';

  // The front end's own code.
  const socket = s.io(first.wsUrl, {
    reconnection: true,
    reconnectionDelay: 1000,
    reconnectionDelayMax: 5000,
    reconnectionAttempts: 5,
  });
  socket.on('connect', () => socket.emit('subscribe', userId));

  const connects = record(socket, 'connect');
  const disconnects = record(socket, 'disconnect');
  const subscribed = recordWithOffset(socket, 'subscribed');
  const notifications = recordWithOffset(socket, 'notification');

  await connects.next();
  assert.deepEqual(await subscribed.next(), {
    userId,
    socketId: socket.id,
    offset: subscribed.lastOffset,
  });
  const pushed = await push(first.control, userId, LIKE);
  assert.deepEqual(withoutOffset(pushed), { sockets: 1 });
  assertNotification(await notifications.next(), LIKE);
  assert.equal(notifications.lastOffset, pushed.offset);

  const stopped = await first.stop();
  assert.equal(stopped.code, 0, `herald exits cleanly on SIGTERM: ${JSON.stringify(stopped)}`);
  const reason = await disconnects.next();
  // 'io server disconnect' would mean herald told the client to go away for good: socket.io-client
  // does not reconnect after it.
  assert.notEqual(reason, 'io server disconnect', 'a shutdown leaves the client free to reconnect');

  const second = await s.herald({ port: first.publicPort });
  await connects.next(30_000);
  assert.deepEqual(await subscribed.next(), {
    userId,
    socketId: socket.id,
    offset: subscribed.lastOffset,
  });
  const again = { type: 'TEST', message: 'after the restart' };
  const pushedAgain = await push(second.control, userId, again);
  assert.deepEqual(withoutOffset(pushedAgain), { sockets: 1 });
  assertNotification(await notifications.next(), again);
  assert.equal(notifications.lastOffset, pushedAgain.offset);
});

test('unsubscribe + disconnect, or a bare disconnect, leaves no socket', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  const leaving = await subscribedClient(s, herald, 'leaving');
  const closing = await subscribedClient(s, herald, 'closing');
  assert.deepEqual(await user(herald.control, 'leaving'), {
    userId: 'leaving',
    online: true,
    sockets: 1,
    addresses: ['127.0.0.1'],
  });
  assert.deepEqual(await user(herald.control, 'closing'), {
    userId: 'closing',
    online: true,
    sockets: 1,
    addresses: ['127.0.0.1'],
  });

  // What a front end does on logout.
  leaving.socket.emit('unsubscribe', 'leaving');
  leaving.socket.disconnect();
  closing.socket.disconnect();

  for (const id of ['leaving', 'closing']) {
    await eventually(`${id} to have no socket`, async () => {
      const u = await user(herald.control, id);
      return u.sockets === 0 && u.online === false;
    });
  }
  assert.deepEqual(withoutOffset(await push(herald.control, 'closing', LIKE)), { sockets: 0 });
});

test('the Engine.IO handshake carries the configured timings and limits', limit, async (t) => {
  const s = scope(t);
  const defaults = await s.herald();
  assert.deepEqual(openPacket(await handshake(defaults.wsUrl)), {
    upgrades: ['websocket'],
    pingInterval: 25000,
    pingTimeout: 20000,
    maxPayload: 1000000,
  });

  const tuned = await s.herald({
    args: ['--ping-interval', '700ms', '--ping-timeout', '400ms', '--max-payload', '5000'],
  });
  assert.deepEqual(openPacket(await handshake(tuned.wsUrl)), {
    upgrades: ['websocket'],
    pingInterval: 700,
    pingTimeout: 400,
    maxPayload: 5000,
  });

  // The client answers herald's pings, so a connection outlives several ping timeouts.
  const { socket, notifications } = await subscribedClient(s, tuned, 'u-pings');
  for (let i = 0; i < 3; i++) await once(socket.io.engine, 'ping');
  assert.ok(socket.connected);
  await push(tuned.control, 'u-pings', LIKE);
  assertNotification(await notifications.next(), LIKE);
});

test('--socketio-path moves the endpoint', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald({ args: ['--socketio-path', '/rt/'] });
  const { notifications } = await subscribedClient(s, herald, 'u-path', { path: '/rt/' });
  const pushed = await push(herald.control, 'u-path', LIKE);
  assertNotification(await notifications.next(), LIKE);
  assert.equal(notifications.lastOffset, pushed.offset);
});

test('CORS: a listed Origin is reflected with credentials, no other', limit, async (t) => {
  const s = scope(t);
  const allowed = 'http://app.example:8080';
  const herald = await s.herald({ args: ['--cors-origins', `http://other.example,${allowed}`] });

  const ok = await handshake(herald.wsUrl, { origin: allowed });
  assert.equal(ok.headers.get('access-control-allow-origin'), allowed);
  assert.equal(ok.headers.get('access-control-allow-credentials'), 'true');

  const stranger = await fetch(pollingUrl(herald.wsUrl), {
    headers: { origin: 'http://evil.example' },
  });
  await stranger.text();
  const reflected = stranger.headers.get('access-control-allow-origin');
  assert.ok(reflected === null, `no Access-Control-Allow-Origin for a stranger: ${reflected}`);

  const plain = await s.herald();
  const none = await handshake(plain.wsUrl, { origin: allowed });
  assert.equal(none.headers.get('access-control-allow-origin'), null);
});

function pollingUrl(wsUrl, path = '/socket.io/') {
  return `${wsUrl}${path}?EIO=4&transport=polling`;
}

// Opens an Engine.IO session over polling by hand; resolves with `{ headers, body }`.
async function handshake(wsUrl, { origin } = {}) {
  const res = await fetch(pollingUrl(wsUrl), { headers: origin ? { origin } : {} });
  const body = await res.text();
  assert.equal(res.status, 200, body);
  return { headers: res.headers, body };
}

// The Engine.IO open packet's fields other than the session id.
function openPacket({ body }) {
  assert.equal(body[0], '0', `an open packet: ${body}`);
  const { sid, ...rest } = JSON.parse(body.slice(1));
  assert.equal(typeof sid, 'string');
  assert.notEqual(sid, '');
  return rest;
}
