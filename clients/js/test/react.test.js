// useNotifications rendered by React (react-test-renderer) over a Herald client of its own, over
// one given, and over a socket.io-client-shaped socket.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';

import { createElement, StrictMode } from 'react';
import TestRenderer from 'react-test-renderer';
import WebSocket from 'ws';

import { Herald } from '../dist/index.js';
import { useNotifications } from '../dist/react.js';
import { fakeHerald, Queue } from './helpers.js';

globalThis.IS_REACT_ACT_ENVIRONMENT = true;
const { act } = TestRenderer;

// react-test-renderer says once that it is deprecated (React suggests a DOM for tests); the rest
// of the console stays as it is.
const consoleError = console.error;
console.error = (...args) => {
  if (!String(args[0]).includes('react-test-renderer is deprecated')) consoleError(...args);
};

// Renders the hook for `userId` with `options` (inside `<StrictMode>` with `strict`, which in
// development mounts every effect, unmounts and mounts it again); `results` gets what it returns
// at each render.
async function renderHook(t, userId, options, { strict = false } = {}) {
  const results = new Queue('render');
  let latest;
  function Probe({ userId, options }) {
    latest = useNotifications(userId, options);
    results.push(latest);
    return null;
  }
  const tree = (userId, options) => {
    const probe = createElement(Probe, { userId, options });
    return strict ? createElement(StrictMode, null, probe) : probe;
  };
  let renderer;
  await act(async () => {
    renderer = TestRenderer.create(tree(userId, options));
  });
  t.after(() => act(async () => renderer.unmount()));
  return {
    results,
    current: () => latest,
    rerender: (userId, options) => act(async () => renderer.update(tree(userId, options))),
    unmount: () => act(async () => renderer.unmount()),
  };
}

// Resolves once `check(current())` holds, acting so that React renders in between.
async function until(hook, check, what) {
  const deadline = Date.now() + 5_000;
  while (!check(hook.current())) {
    if (Date.now() > deadline) assert.fail(`${what}: ${JSON.stringify(hook.current())}`);
    await act(() => new Promise((resolve) => setTimeout(resolve, 10)));
  }
  return hook.current();
}

test('its own Herald: subscribes, lists newest first with ids, marks read, closes on unmount', async (t) => {
  const server = await fakeHerald(t);
  const toasts = [];
  const hook = await renderHook(t, 'u1', {
    url: server.url,
    WebSocket,
    limit: 3,
    onNotification: (n) => toasts.push(n.id),
  });
  assert.equal(hook.current().isConnected, false);
  const conn = await server.connections.next();
  const sub = await conn.messages.next();
  assert.deepEqual(sub.data, { userIds: ['u1'] });
  conn.send('subscribed', { userIds: ['u1'], socketId: 's', offset: 'ab-0' });
  await until(hook, (r) => r.isConnected, 'connected');

  conn.send('notification', { id: 'like-1', type: 'LIKE' }, { offset: 'ab-1' });
  conn.send('notification', { type: 'COMMENT' }, { offset: 'ab-2' });
  conn.send('notification', { type: 'NO_OFFSET' });
  conn.send('notification', { type: 'LIKE', id: 'like-1' }, { offset: 'ab-3' });
  conn.send('notification', { type: 'FOLLOW', id: 7 }, { offset: 'ab-4' });
  let r = await until(hook, (r) => r.notifications.some((n) => n.type === 'FOLLOW'), 'FOLLOW');
  assert.equal(r.notifications.length, 3, 'limit 3');
  const [follow, noOffset, comment] = r.notifications;
  assert.deepEqual(
    follow,
    { type: 'FOLLOW', id: 'ab-4', read: false, offset: 'ab-4' },
    'a non-string id: the offset',
  );
  assert.equal(noOffset.type, 'NO_OFFSET');
  assert.equal(typeof noOffset.id, 'string');
  assert.equal(noOffset.offset, undefined);
  assert.deepEqual(comment, { type: 'COMMENT', id: 'ab-2', read: false, offset: 'ab-2' });
  assert.deepEqual(toasts, ['like-1', 'ab-2', noOffset.id, 'ab-4'], 'like-1 twice: added once');
  assert.equal(r.unreadCount, 3);

  await act(async () => r.markAsRead('ab-2'));
  r = hook.current();
  assert.equal(r.unreadCount, 2);
  assert.equal(r.notifications.find((n) => n.id === 'ab-2').read, true);
  await act(async () => r.markAsRead());
  assert.equal(hook.current().unreadCount, 0);
  assert.ok(hook.current().notifications.every((n) => n.read));

  const closed = new Promise((resolve) => conn.ws.on('close', resolve));
  await hook.unmount();
  assert.equal(await closed, 1000, 'its Herald closed');
});

test('a Herald given: subscribed, unsubscribed on unmount, not closed', async (t) => {
  const server = await fakeHerald(t);
  const client = new Herald(server.url, { WebSocket });
  t.after(() => client.close());
  const hook = await renderHook(t, 42, { client });
  const conn = await server.connections.next();
  assert.deepEqual((await conn.messages.next()).data, { userIds: ['42'] });
  conn.send('subscribed', { userIds: ['42'], socketId: 's', offset: 'ab-0' });
  await until(hook, (r) => r.isConnected, 'connected');
  conn.send('notification', { message: 'hi' }, { offset: 'ab-1' });
  await until(hook, (r) => r.notifications.length === 1, 'one notification');
  await hook.unmount();
  assert.deepEqual(await conn.messages.next(), { binary: false, event: 'unsubscribe', data: '42' });
  assert.equal(client.state, 'connected');
});

test('a socket.io-client socket: subscribe on connect, notifications with their offset', async (t) => {
  // What the hook uses of socket.io-client's Socket: on/off/emit and `connected`.
  class FakeSocket extends EventEmitter {
    connected = false;
    sent = [];
    emit(event, ...args) {
      if (['connect', 'disconnect', 'notification'].includes(event))
        return super.emit(event, ...args);
      this.sent.push([event, ...args]);
      return this;
    }
  }
  const socket = new FakeSocket();
  const hook = await renderHook(t, 'u1', { socket });
  assert.equal(hook.current().isConnected, false);
  assert.deepEqual(socket.sent, []);
  socket.connected = true;
  await act(async () => socket.emit('connect'));
  assert.deepEqual(socket.sent, [['subscribe', 'u1']]);
  assert.equal(hook.current().isConnected, true);
  await act(async () => socket.emit('notification', { message: 'a' }, 'ab-1'));
  await act(async () => socket.emit('notification', { message: 'a' }, 'ab-1'));
  await act(async () => socket.emit('notification', { message: 'b' }, 'ab-2'));
  assert.deepEqual(
    hook.current().notifications.map((n) => [n.id, n.message]),
    [
      ['ab-2', 'b'],
      ['ab-1', 'a'],
    ],
  );
  socket.connected = false;
  await act(async () => socket.emit('disconnect'));
  assert.equal(hook.current().isConnected, false);
  socket.connected = true;
  await act(async () => socket.emit('connect'));
  assert.deepEqual(
    socket.sent,
    [
      ['subscribe', 'u1'],
      ['subscribe', 'u1'],
    ],
    'again on reconnect',
  );

  // Another user: a list of its own, the first user unsubscribed.
  await hook.rerender('u2', { socket });
  assert.deepEqual(socket.sent.slice(2), [
    ['unsubscribe', 'u1'],
    ['subscribe', 'u2'],
  ]);
  assert.deepEqual(hook.current().notifications, []);
  await hook.unmount();
  assert.equal(socket.listenerCount('notification'), 0);
  assert.deepEqual(socket.sent.at(-1), ['unsubscribe', 'u2']);
});

test('under StrictMode (effects mounted twice): one connection, each notification once', async (t) => {
  const server = await fakeHerald(t);
  const toasts = [];
  const hook = await renderHook(
    t,
    'u1',
    { url: server.url, WebSocket, onNotification: (n) => toasts.push(n.id) },
    { strict: true },
  );
  const conn = await server.connections.next();
  assert.deepEqual((await conn.messages.next()).data, { userIds: ['u1'] });
  conn.send('subscribed', { userIds: ['u1'], socketId: 's', offset: 'ab-0' });
  await until(hook, (r) => r.isConnected, 'connected');
  conn.send('notification', { type: 'LIKE' }, { offset: 'ab-1' });
  await until(hook, (r) => r.notifications.length === 1, 'one notification');
  // The Herald of the first mount was closed before it connected: none other came, or comes.
  await act(() => new Promise((resolve) => setTimeout(resolve, 300)));
  assert.deepEqual(server.connections.pending, [], 'one connection');
  assert.deepEqual(toasts, ['ab-1'], 'onNotification once');
  assert.equal(conn.ws.readyState, conn.ws.OPEN);
  const closed = new Promise((resolve) => conn.ws.on('close', resolve));
  await hook.unmount();
  assert.equal(await closed, 1000, 'its Herald closed');
});
