// JWT authentication with the clients front ends use: socket.io-client's `auth: { token }` on both
// transports, its `connect_error` and retry, subscribing to another user, refresh and expiry; the
// `ws` package with `?token=`, an `Authorization` header, or an `auth` event; and the same from a
// page in headless Chromium. herald runs with `--jwt-secret`; tokens are HS256, signed here.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import WebSocket from 'ws';

import { openPage } from './chromium.js';
import {
  assertNotification,
  assertRawNotification,
  once,
  PATIENCE,
  push,
  record,
  recordRaw,
  recordWithOffset,
  scope,
  signHs256,
  subscribeRaw,
  TEST_TIMEOUT,
  user,
  withoutOffset,
} from './harness.js';

const limit = { timeout: TEST_TIMEOUT };

// 32 bytes, the shortest HS256 secret herald accepts (RFC 7518 §3.2).
const SECRET = 'herald-test-secret-of-32-bytes!!';
const AUTH = ['--jwt-secret', SECRET];

const SENT = { type: 'MENTION', message: 'You were mentioned' };

const now = () => Math.floor(Date.now() / 1000);

// A token for `sub` valid for `ttl` more seconds, with its `exp`.
function tokenFor(sub, ttl = 60) {
  const exp = now() + ttl;
  return { token: signHs256(SECRET, { sub, exp }), exp };
}

const token = (sub) => tokenFor(sub).token;

// Well formed, signed with another secret.
const forged = (sub) => signHs256('not-the-secret-herald-was-given!', { sub, exp: now() + 60 });

const expired = (sub) => signHs256(SECRET, { sub, exp: now() - 60 });

// A Socket.IO socket with `opts` (its `auth` among them), its events recorded from the start
// (`subscribed` and `notification` with the offset herald sends last: `recordWithOffset`).
function sioSocket(s, herald, opts) {
  const socket = s.io(herald.wsUrl, opts);
  return {
    socket,
    subscribed: recordWithOffset(socket, 'subscribed'),
    notifications: recordWithOffset(socket, 'notification'),
    errors: record(socket, 'error'),
    authenticated: record(socket, 'authenticated'),
  };
}

// Connects with `token` and subscribes to `userId`; resolves once subscribed.
async function connectedAs(s, herald, userId, tokenValue, transports = ['websocket']) {
  const c = sioSocket(s, herald, { auth: { token: tokenValue }, transports });
  await once(c.socket, 'connect');
  c.socket.emit('subscribe', userId);
  assert.deepEqual(await c.subscribed.next(), {
    userId,
    socketId: c.socket.id,
    offset: c.subscribed.lastOffset,
  });
  return c;
}

test('socket.io-client with auth.token connects and gets its own pushes', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald({ args: AUTH });
  const { notifications } = await connectedAs(s, herald, 'alice', token('alice'));
  const pushed = await push(herald.control, 'alice', SENT);
  assert.deepEqual(withoutOffset(pushed), { sockets: 1 });
  assertNotification(await notifications.next(), SENT);
  assert.equal(notifications.lastOffset, pushed.offset);
});

test('socket.io-client: a bad token is a connect_error; a retry connects', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald({ args: AUTH });
  for (const [auth, message] of [
    [undefined, 'unauthorized'],
    [{ token: forged('alice') }, 'unauthorized'],
    [{ token: 'not-a-jwt' }, 'unauthorized'],
    [{ token: expired('alice') }, 'token expired'],
  ]) {
    const { socket } = sioSocket(s, herald, { auth, transports: ['websocket'] });
    const err = await once(socket, 'connect_error');
    assert.equal(err.message, message, JSON.stringify(auth));
    assert.equal(socket.connected, false);
    socket.disconnect();
  }

  const { socket, subscribed, notifications } = sioSocket(s, herald, {
    auth: { token: forged('alice') },
    transports: ['websocket'],
  });
  assert.equal((await once(socket, 'connect_error')).message, 'unauthorized');
  socket.auth = { token: token('alice') };
  socket.connect();
  await once(socket, 'connect');
  socket.emit('subscribe', 'alice');
  assert.equal((await subscribed.next()).userId, 'alice');
  assert.deepEqual(withoutOffset(await push(herald.control, 'alice', SENT)), { sockets: 1 });
  assertNotification(await notifications.next(), SENT);
});

test('socket.io-client: subscribing to another user is forbidden', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald({ args: AUTH });
  const { socket, errors, notifications } = await connectedAs(s, herald, 'alice', token('alice'));
  socket.emit('subscribe', 'bob');
  assert.deepEqual(await errors.next(), { message: 'forbidden' });
  assert.deepEqual(await socket.timeout(PATIENCE).emitWithAck('subscribe', 'bob'), {
    error: 'forbidden',
  });
  assert.equal((await user(herald.control, 'bob')).sockets, 0);
  assert.deepEqual(withoutOffset(await push(herald.control, 'bob', SENT)), { sockets: 0 });
  // Still connected, and its own pushes arrive.
  assert.deepEqual(withoutOffset(await push(herald.control, 'alice', SENT)), { sockets: 1 });
  assertNotification(await notifications.next(), SENT);
});

test("socket.io-client: emit('refresh'), then expiry without one", limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald({ args: AUTH });
  const { socket, authenticated, errors } = await connectedAs(s, herald, 'alice', token('alice'));
  const fresh = tokenFor('alice', 120);
  socket.emit('refresh', fresh.token);
  assert.deepEqual(await authenticated.next(), { userId: 'alice', exp: fresh.exp });
  assert.deepEqual(await socket.timeout(PATIENCE).emitWithAck('refresh', { token: fresh.token }), {
    userId: 'alice',
    exp: fresh.exp,
  });
  socket.emit('refresh', token('bob'));
  assert.deepEqual(await errors.next(), { message: 'forbidden' });
  socket.emit('refresh', 'not-a-jwt');
  assert.deepEqual(await errors.next(), { message: 'unauthorized' });
  assert.equal(socket.connected, true);

  // A token about to expire, never refreshed: told, then disconnected by the server.
  const short = await connectedAs(s, herald, 'carol', tokenFor('carol', 2).token);
  const disconnected = once(short.socket, 'disconnect');
  assert.deepEqual(await short.errors.next(), { message: 'token expired' });
  assert.equal(await disconnected, 'io server disconnect');
});

test('socket.io-client over long-polling: auth.token, connect_error, pushes', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald({ args: AUTH });
  const refused = sioSocket(s, herald, {
    auth: { token: forged('alice') },
    transports: ['polling'],
  });
  assert.equal((await once(refused.socket, 'connect_error')).message, 'unauthorized');

  const { socket, notifications } = await connectedAs(s, herald, 'alice', token('alice'), [
    'polling',
  ]);
  assert.equal(socket.io.engine.transport.name, 'polling');
  assert.deepEqual(withoutOffset(await push(herald.control, 'alice', SENT)), { sockets: 1 });
  assertNotification(await notifications.next(), SENT);
});

// Opens a `ws` WebSocket on `/ws` with `query` and `options`, and records its messages.
async function rawSocket(s, herald, query = '', options = {}) {
  const ws = new WebSocket(`${herald.wsUrl.replace(/^http/, 'ws')}/ws${query}`, options);
  s.defer(() => ws.terminate());
  const messages = recordRaw(ws);
  await once(ws, 'open');
  return { ws, messages };
}

// The status and JSON body of a refused `/ws` handshake.
async function refusedRaw(s, herald, query = '', options = {}) {
  const ws = new WebSocket(`${herald.wsUrl.replace(/^http/, 'ws')}/ws${query}`, options);
  // A refused socket never opens; ending it then reports "closed before the connection was
  // established", which is expected here.
  ws.on('error', () => {});
  s.defer(() => ws.terminate());
  const res = await new Promise((resolve, reject) => {
    ws.on('unexpected-response', (req, response) => resolve(response));
    ws.on('open', () => reject(new Error(`${query} was upgraded`)));
  });
  let body = '';
  res.setEncoding('utf8');
  for await (const chunk of res) body += chunk;
  return { status: res.statusCode, body: JSON.parse(body) };
}

test('ws: ?token=, an Authorization header, or an auth event', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald({ args: AUTH });
  const byQuery = await rawSocket(s, herald, `?token=${token('alice')}`);
  await subscribeRaw(byQuery.ws, byQuery.messages, 'alice');
  const byHeader = await rawSocket(s, herald, '', {
    headers: { Authorization: `Bearer ${token('alice')}` },
  });
  await subscribeRaw(byHeader.ws, byHeader.messages, 'alice');
  const byEvent = await rawSocket(s, herald);
  const { token: t1, exp } = tokenFor('alice');
  byEvent.ws.send(JSON.stringify({ event: 'auth', data: t1 }));
  assert.deepEqual(await byEvent.messages.next(), {
    event: 'authenticated',
    data: { userId: 'alice', exp },
  });
  await subscribeRaw(byEvent.ws, byEvent.messages, 'alice');

  byQuery.ws.send(JSON.stringify({ event: 'subscribe', data: 'bob' }));
  assert.deepEqual(await byQuery.messages.next(), {
    event: 'error',
    data: { message: 'forbidden' },
  });

  const pushed = await push(herald.control, 'alice', SENT);
  assert.deepEqual(withoutOffset(pushed), { sockets: 3 });
  for (const { messages } of [byQuery, byHeader, byEvent]) {
    assertRawNotification(await messages.next(), SENT, pushed.offset);
  }

  assert.deepEqual(await refusedRaw(s, herald, `?token=${forged('alice')}`), {
    status: 401,
    body: { error: 'unauthorized' },
  });
  assert.deepEqual(
    await refusedRaw(s, herald, '', { headers: { Authorization: `Bearer ${expired('alice')}` } }),
    { status: 401, body: { error: 'token expired' } },
  );

  // No token and a bad auth event: told, then closed with 4001.
  const bad = await rawSocket(s, herald);
  const closed = new Promise((resolve) => bad.ws.on('close', (code) => resolve(code)));
  bad.ws.send(JSON.stringify({ event: 'auth', data: forged('alice') }));
  assert.deepEqual(await bad.messages.next(), {
    event: 'error',
    data: { message: 'unauthorized' },
  });
  assert.equal(await closed, 4001);
});

// A page whose native WebSocket authenticates with an `auth` event, subscribes once
// authenticated, and reports everything it receives (the data, or a notification whole, with its
// offset) and its close.
function rawAuthPage(wsUrl, userId, tokenValue) {
  return `<!doctype html>
<html>
<head><meta charset="utf-8"><title>herald /ws with a token</title></head>
<body>
<script>
  const report = (kind, data) =>
    fetch('/report', { method: 'POST', body: JSON.stringify({ kind, data }) });
  window.addEventListener('error', (e) => report('page-error', String(e.message)));

  const userId = ${JSON.stringify(userId)};
  const ws = new WebSocket(${JSON.stringify(wsUrl)});
  ws.onopen = () => ws.send(JSON.stringify({ event: 'auth', data: ${JSON.stringify(tokenValue)} }));
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    const { event, data } = m;
    report(event, event === 'notification' ? m : data);
    if (event === 'authenticated') ws.send(JSON.stringify({ event: 'subscribe', data: userId }));
  };
  ws.onclose = (e) => report('close', { code: e.code, reason: e.reason });
</script>
</body>
</html>
`;
}

// A page running socket.io-client with `auth: { token }`, subscribing on connect; it reports the
// arguments of `subscribed` and `notification` (the data, then the offset). WebSocket only: the
// page is served from another origin, and herald here allows no CORS origins for polling.
function socketIoAuthPage(heraldUrl, userId, tokenValue) {
  return `<!doctype html>
<html>
<head><meta charset="utf-8"><title>herald Socket.IO with a token</title></head>
<body>
<script src="/socket.io.min.js"></script>
<script>
  const report = (kind, data) =>
    fetch('/report', { method: 'POST', body: JSON.stringify({ kind, data }) });
  window.addEventListener('error', (e) => report('page-error', String(e.message)));

  const socket = io(${JSON.stringify(heraldUrl)}, {
    auth: { token: ${JSON.stringify(tokenValue)} },
    transports: ['websocket'],
  });
  socket.on('connect', () => socket.emit('subscribe', ${JSON.stringify(userId)}));
  socket.on('connect_error', (e) => report('connect_error', String(e && e.message)));
  socket.on('subscribed', (...args) => report('subscribed', args));
  socket.on('notification', (...args) => report('notification', args));
  socket.on('error', (d) => report('error', d));
</script>
</body>
</html>
`;
}

test('Chromium, native WebSocket: auth event, subscribe, push', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald({ args: AUTH });
  const { token: tokenValue, exp } = tokenFor('chr');
  const wsUrl = `${herald.wsUrl.replace(/^http/, 'ws')}/ws`;
  const got = await openPage(t, s, herald, rawAuthPage(wsUrl, 'chr', tokenValue));

  assert.deepEqual(await got('authenticated'), { userId: 'chr', exp });
  const subscribed = await got('subscribed');
  assert.equal(typeof subscribed.socketId, 'string');
  assert.deepEqual(withoutOffset(subscribed), { userId: 'chr', socketId: subscribed.socketId });
  const pushed = await push(herald.control, 'chr', SENT);
  assert.deepEqual(withoutOffset(pushed), { sockets: 1 });
  assertRawNotification(await got('notification'), SENT, pushed.offset);
});

test('Chromium, socket.io-client with auth: { token }', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald({ args: AUTH });
  const page = socketIoAuthPage(herald.wsUrl, 'chr-sio', token('chr-sio'));
  const got = await openPage(t, s, herald, page);

  const [subscribed, ...more] = await got('subscribed');
  assert.equal(typeof subscribed.socketId, 'string');
  assert.deepEqual(withoutOffset(subscribed), { userId: 'chr-sio', socketId: subscribed.socketId });
  assert.deepEqual(more, [subscribed.offset], 'the offset again, as the last argument');
  const pushed = await push(herald.control, 'chr-sio', SENT);
  assert.deepEqual(withoutOffset(pushed), { sockets: 1 });
  const [notification, ...after] = await got('notification');
  assertNotification(notification, SENT);
  assert.deepEqual(after, [pushed.offset], 'the offset pushed, as the last argument');
});
