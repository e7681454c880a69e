// herald-client (`clients/js`, built to `dist/`) against the real herald: JSON and MessagePack
// with permessage-deflate, a restart with `--state-dir` (close 1012) and without state, the
// recovery window, JWT auth with refresh and refused tokens, exactly-once delivery across cut
// connections, `close()`; and the same client in headless Chromium with the browser's WebSocket.
// A TCP proxy of the test's own sits between client and herald, so that the test decides when a
// connection breaks and when a new one gets through.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import WebSocket from 'ws';

import { Herald } from '../../clients/js/dist/index.js';
import { msgpack } from '../../clients/js/dist/msgpack.js';
import { openPage } from './chromium.js';
import {
  assertNotification,
  eventually,
  parseOffset,
  push,
  Queue,
  scope,
  signHs256,
  tcpProxy,
  TEST_TIMEOUT,
  user,
} from './harness.js';

const limit = { timeout: TEST_TIMEOUT };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// 32 bytes, the shortest HS256 secret herald accepts.
const SECRET = 'herald-test-secret-of-32-bytes!!';
const now = () => Math.floor(Date.now() / 1000);

// A Herald on `url` with the `ws` package, closed when the test ends. `sockets` gets every
// WebSocket it makes, each with `closes`, the close codes it saw.
function heraldClient(s, url, options = {}) {
  const sockets = [];
  class Recorded extends WebSocket {
    constructor(...args) {
      super(...args);
      this.closeCode = undefined;
      this.on('close', (code) => (this.closeCode = code));
      sockets.push(this);
    }
  }
  const c = new Herald(url, { WebSocket: Recorded, ...options });
  const notifications = new Queue('notification');
  const subscribed = new Queue("'subscribed' event");
  const errors = new Queue("'error' event");
  c.on('notification', (data, { offset }) => notifications.push({ data, offset }));
  c.on('subscribed', (sub) => subscribed.push(sub));
  c.on('error', (e) => errors.push(e));
  s.defer(() => c.close());
  return { c, sockets, notifications, subscribed, errors };
}

// Replaces Math.random for the test: the client's backoff delays become their ceilings.
function randomAtCeiling(t) {
  const random = Math.random;
  Math.random = () => 1 - Number.EPSILON;
  t.after(() => (Math.random = random));
}

for (const format of ['json', 'msgpack']) {
  test(
    `${format}: subscribe two users, receive each push once, permessage-deflate agreed`,
    limit,
    async (t) => {
      const s = scope(t);
      const herald = await s.herald();
      const url = herald.wsUrl.replace(/^http/, 'ws') + '/ws';
      const { c, sockets, notifications, subscribed } = heraldClient(s, url, { format, msgpack });
      c.subscribe('alice');
      c.subscribe(42);
      const sub = await subscribed.next();
      assert.deepEqual(sub.userIds, ['alice', '42']);
      assert.equal(sub.recovered, undefined);
      parseOffset(sub.offset);
      assert.equal(c.state, 'connected');
      assert.equal(sockets.length, 1);
      assert.equal(sockets[0].protocol, format === 'msgpack' ? 'herald.msgpack' : '');
      assert.match(
        sockets[0].extensions,
        /^permessage-deflate/,
        'ws offers deflate; herald agrees',
      );

      // Over the 1 KiB threshold, so that it goes compressed; and a small one.
      const big = {
        type: 'DIGEST',
        message: 'lorem ipsum dolor sit amet '.repeat(100),
        n: 2 ** 40,
      };
      const small = { type: 'LIKE', message: 'Someone liked your post', data: { postId: 'p1' } };
      const pushed = [
        await push(herald.control, 'alice', big),
        await push(herald.control, 42, small),
      ];
      for (const [i, sent] of [big, small].entries()) {
        const { data, offset } = await notifications.next();
        assertNotification(data, sent);
        assert.equal(offset, pushed[i].offset);
      }
      assert.equal(c.lastOffset, pushed[1].offset);
      const m = await (await fetch(`${herald.control}/metrics`)).text();
      assert.match(m, /herald_deliveries_compressed_total [1-9]/, 'the big one went compressed');
    },
  );
}

test(
  'SIGTERM (1012) and a restart with --state-dir: back at once, recovered, each missed push once',
  limit,
  async (t) => {
    // Backoff delays of a minute: only the immediate attempt after 1012 can make it in time.
    randomAtCeiling(t);
    const s = scope(t);
    const stateDir = mkdtempSync(join(tmpdir(), 'herald-client-state-'));
    t.after(() => rmSync(stateDir, { recursive: true, force: true }));
    const args = ['--state-dir', stateDir, '--drain-time', '0s'];
    const first = await s.herald({ args });
    const proxy = await tcpProxy(s, first.publicPort);
    const { c, sockets, notifications, subscribed } = heraldClient(s, proxy.url, {
      minDelay: 60_000,
      maxDelay: 60_000,
    });
    c.subscribe('u1');
    assert.equal((await subscribed.next()).recovered, undefined);
    const before = await push(first.control, 'u1', { message: 'before' });
    assert.equal((await notifications.next()).offset, before.offset);

    proxy.hold();
    assert.deepEqual(await first.stop(), { code: 0, signal: null });
    // herald is gone; its close frame may still be on its way through the proxy.
    await eventually('the client told 1012', () => sockets[0].closeCode !== undefined);
    assert.equal(sockets[0].closeCode, 1012);
    await eventually('the client connects again at once', () => proxy.waiting === 1);

    const second = await s.herald({ args });
    proxy.upstream = second.publicPort;
    const missed = [];
    for (const message of ['one', 'two', 'three']) {
      const body = await push(second.control, 'u1', { message });
      assert.equal(body.sockets, 0, 'pushed while the client is away');
      missed.push(body.offset);
    }
    assert.equal(parseOffset(missed[0]).epoch, parseOffset(before.offset).epoch, 'the same epoch');
    proxy.restore();
    const sub = await subscribed.next();
    assert.equal(sub.recovered, true);
    assert.equal(c.recovered, true);
    for (const [i, message] of ['one', 'two', 'three'].entries()) {
      const n = await notifications.next();
      assert.deepEqual([n.data.message, n.offset], [message, missed[i]]);
    }
    const after = await push(second.control, 'u1', { message: 'after' });
    assert.deepEqual((await notifications.next()).data.message, 'after');
    assert.equal(c.lastOffset, after.offset);
    assert.equal(proxy.accepted, 2, 'one connection each time, no failed attempt');
    assert.deepEqual(notifications.pending, []);
  },
);

test('kill -9 and a restart: a new epoch, recovered false, nothing replayed', limit, async (t) => {
  const s = scope(t);
  const stateDir = mkdtempSync(join(tmpdir(), 'herald-client-state-'));
  t.after(() => rmSync(stateDir, { recursive: true, force: true }));
  const first = await s.herald({ args: ['--state-dir', stateDir] });
  const proxy = await tcpProxy(s, first.publicPort);
  const { c, notifications, subscribed } = heraldClient(s, proxy.url, { minDelay: 100 });
  c.subscribe('u1');
  await subscribed.next();
  const old = await push(first.control, 'u1', { message: 'old' });
  await notifications.next();

  proxy.hold();
  await first.kill();
  const second = await s.herald({ args: ['--state-dir', stateDir] });
  proxy.upstream = second.publicPort;
  assert.equal((await push(second.control, 'u1', { message: 'lost' })).sockets, 0);
  proxy.restore();
  const sub = await subscribed.next();
  assert.equal(sub.recovered, false);
  assert.notEqual(parseOffset(sub.offset).epoch, parseOffset(old.offset).epoch, 'a new epoch');
  assert.equal(c.lastOffset, sub.offset, 'it starts again from the answer');
  const next = await push(second.control, 'u1', { message: 'next' });
  const n = await notifications.next();
  assert.deepEqual([n.data.message, n.offset], ['next', next.offset], 'not the lost one');
});

test('away longer than --recovery-window: recovered false, then live again', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald({ args: ['--recovery-window', '1s'] });
  const proxy = await tcpProxy(s, herald.publicPort);
  const { c, notifications, subscribed } = heraldClient(s, proxy.url, { minDelay: 100 });
  c.subscribe('u1');
  await subscribed.next();
  await push(herald.control, 'u1', { message: 'seen' });
  await notifications.next();

  proxy.hold();
  proxy.cut();
  await eventually(
    'herald sees the client go',
    async () => !(await user(herald.control, 'u1')).online,
  );
  await push(herald.control, 'u1', { message: 'too old' });
  await sleep(2_500);
  // Pushes after the window trim the log of the older ones.
  await push(herald.control, 'u2', { message: 'someone else' });
  proxy.restore();
  const sub = await subscribed.next();
  assert.equal(sub.recovered, false);
  assert.equal(c.recovered, false);
  const next = await push(herald.control, 'u1', { message: 'next' });
  const n = await notifications.next();
  assert.deepEqual([n.data.message, n.offset], ['next', next.offset]);
});

test(
  'JWT: the token function is asked again after 4001 and 4003, and refreshes before exp',
  limit,
  async (t) => {
    const s = scope(t);
    const herald = await s.herald({ args: ['--jwt-secret', SECRET] });
    const url = herald.wsUrl.replace(/^http/, 'ws') + '/ws';
    // A forged token, an expired one, a token of 2 s whose refresh fails (so that herald closes
    // with 4003 when it expires), then tokens of 3 s, each refreshed about halfway.
    let calls = 0;
    const given = [];
    const token = async () => {
      const call = calls++;
      if (call === 3) throw new Error('auth server down');
      const claims = { sub: 'u1', exp: now() + ([60, -60, 2][call] ?? 3), call };
      given.push(signHs256(call === 0 ? 'not-the-secret-herald-was-given!' : SECRET, claims));
      return given.at(-1);
    };
    const { c, sockets, notifications, subscribed, errors } = heraldClient(s, url, {
      token,
      minDelay: 100,
    });
    c.subscribe('u1');
    const seen = [];
    while (seen.filter((e) => e.code).length < 3) seen.push(await errors.next(20_000));
    assert.deepEqual(seen, [
      { message: 'unauthorized' },
      { message: 'unauthorized', code: 4001 },
      { message: 'token expired' },
      { message: 'token expired', code: 4001 },
      { message: 'token: auth server down' },
      { message: 'token expired' },
      { message: 'token expired', code: 4003 },
    ]);
    assert.deepEqual((await subscribed.next()).userIds, ['u1'], 'the third socket subscribed');
    assert.deepEqual((await subscribed.next()).recovered, true, 'and the fourth resumed');
    assert.deepEqual(
      sockets.map((ws) => ws.closeCode),
      [4001, 4001, 4003, undefined],
    );

    // Three refreshes on the fourth socket, which herald would close with 4003 after 3 s without.
    await eventually('three refreshes', () => calls >= 8, 20_000);
    assert.equal(sockets.length, 4, 'the same socket');
    assert.equal(sockets[3].closeCode, undefined);
    const body = await push(herald.control, 'u1', { message: 'still here' });
    assert.equal(body.sockets, 1);
    assert.equal((await notifications.next()).offset, body.offset);
  },
);

test('JWT: a static token refused is an error event and the end, no loop', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald({ args: ['--jwt-secret', SECRET] });
  const url = herald.wsUrl.replace(/^http/, 'ws') + '/ws';
  const forged = signHs256('not-the-secret-herald-was-given!', { sub: 'u1', exp: now() + 60 });
  const { c, sockets, errors } = heraldClient(s, url, { token: forged, minDelay: 10 });
  c.subscribe('u1');
  assert.deepEqual(await errors.next(), { message: 'unauthorized' });
  assert.deepEqual(await errors.next(), { message: 'unauthorized', code: 4001 });
  await sleep(500);
  assert.equal(sockets.length, 1, 'no second attempt');
  assert.equal(c.state, 'disconnected');
});

test(
  'exactly once, in order, while connections are cut under a stream of pushes',
  limit,
  async (t) => {
    const s = scope(t);
    const herald = await s.herald({ args: ['--user-rate', '0'] });
    const proxy = await tcpProxy(s, herald.publicPort);
    const { c, notifications, subscribed } = heraldClient(s, proxy.url, {
      minDelay: 50,
      maxDelay: 200,
    });
    c.subscribe('u1');
    c.subscribe('u2');
    await subscribed.next();
    // Subscribing again, and to the same user as a number, changes nothing.
    c.subscribe('u1');
    c.subscribe('u2');

    const sent = [];
    let cuts = 0;
    for (let i = 0; i < 300; i++) {
      const to = i % 3 === 0 ? 'u2' : 'u1';
      sent.push((await push(herald.control, to, { i })).offset);
      if (i % 60 === 30) {
        // Pushes go on while the client is away; the next cut waits until it is back, so that
        // each cut finds a connection to cut.
        await eventually('the client back after the last cut', () => proxy.accepted > cuts);
        proxy.cut();
        cuts += 1;
      }
    }
    await push(herald.control, 'u1', { i: 'end' });
    const got = [];
    for (;;) {
      const n = await notifications.next();
      if (n.data.i === 'end') break;
      got.push(n);
    }
    assert.deepEqual(
      got.map((n) => n.data.i),
      sent.map((_, i) => i),
      'each push once, in order',
    );
    assert.deepEqual(
      got.map((n) => n.offset),
      sent,
    );
    assert.ok(proxy.accepted >= 6, `reconnected after each cut: ${proxy.accepted} connections`);
  },
);

test('close(): herald sees the user go, and the client does not come back', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald();
  const proxy = await tcpProxy(s, herald.publicPort);
  const { c, subscribed } = heraldClient(s, proxy.url, { minDelay: 10 });
  c.subscribe('u1');
  await subscribed.next();
  assert.equal((await user(herald.control, 'u1')).online, true);
  c.close();
  assert.equal(c.state, 'disconnected');
  await eventually(
    'herald sees the user go',
    async () => !(await user(herald.control, 'u1')).online,
  );
  await sleep(300);
  assert.equal(proxy.accepted, 1, 'no reconnect');
});

// The page: imports herald-client from the test's server as an ES module, with the browser's own
// WebSocket, and reports what it gets to `/report`.
function page(url, format) {
  return `<!doctype html>
<html>
<head><meta charset="utf-8"><title>herald-client</title></head>
<body>
<script type="module">
  import { Herald } from '/dist/index.js';
  import { msgpack } from '/dist/msgpack.js';
  const report = (kind, data) =>
    fetch('/report', { method: 'POST', body: JSON.stringify({ kind, data }) });
  window.addEventListener('error', (e) => report('page-error', String(e.message)));
  const c = new Herald(${JSON.stringify(url)}, { format: ${JSON.stringify(format)}, msgpack, minDelay: 100 });
  c.on('state', (state) => report('state', state));
  c.on('subscribed', (sub) => report('subscribed', sub));
  c.on('notification', (data, { offset }) => report('notification', { data, offset }));
  c.on('error', (e) => report('error', e));
  c.subscribe('browser-user');
</script>
</body>
</html>
`;
}

const DIST = new URL('../../clients/js/dist/', import.meta.url);

for (const format of ['json', 'msgpack']) {
  test(
    `Chromium (${format}): receives, loses its connection, recovers the pushes it missed`,
    limit,
    async (t) => {
      const s = scope(t);
      const herald = await s.herald();
      const proxy = await tcpProxy(s, herald.publicPort);
      // The built package, as the page imports it (`/dist/index.js` imports `./util.js`).
      const scripts = Object.fromEntries(
        readdirSync(DIST)
          .filter((f) => f.endsWith('.js'))
          .map((f) => [`/dist/${f}`, readFileSync(new URL(f, DIST))]),
      );
      const got = await openPage(t, s, herald, page(proxy.url, format), scripts);

      assert.equal(await got('state'), 'connecting');
      assert.equal(await got('state'), 'connected');
      const sub = await got('subscribed');
      assert.deepEqual(sub.userIds, ['browser-user']);
      const first = await push(herald.control, 'browser-user', { message: 'first' });
      assert.equal(first.sockets, 1);
      const n1 = await got('notification');
      assertNotification(n1.data, { message: 'first' });
      assert.equal(n1.offset, first.offset);

      proxy.hold();
      proxy.cut();
      assert.equal(await got('state'), 'disconnected');
      assert.equal(await got('state'), 'connecting');
      await eventually(
        'herald sees the page go',
        async () => !(await user(herald.control, 'browser-user')).online,
      );
      const missed = [];
      for (const message of ['one', 'two']) {
        missed.push((await push(herald.control, 'browser-user', { message })).offset);
      }
      proxy.restore();
      assert.equal(await got('state'), 'connected');
      const again = await got('subscribed');
      assert.equal(again.recovered, true);
      for (const [i, message] of ['one', 'two'].entries()) {
        const n = await got('notification');
        assert.deepEqual([n.data.message, n.offset], [message, missed[i]]);
      }
      const last = await push(herald.control, 'browser-user', { message: 'last' });
      const n = await got('notification');
      assert.deepEqual([n.data.message, n.offset], ['last', last.offset], 'nothing twice');
    },
  );
}

// useNotifications rendered by React (react-test-renderer, from clients/js's devDependencies)
// over a real socket.io-client socket on herald's Socket.IO endpoint.
test(
  'useNotifications over socket.io-client: subscribes, lists pushes, marks them read',
  limit,
  async (t) => {
    const require = createRequire(new URL('../../clients/js/package.json', import.meta.url));
    const { createElement } = require('react');
    const TestRenderer = require('react-test-renderer');
    const { useNotifications } = await import('../../clients/js/dist/react.js');
    globalThis.IS_REACT_ACT_ENVIRONMENT = true;
    const { act } = TestRenderer;
    const consoleError = console.error;
    console.error = (...args) => {
      if (!String(args[0]).includes('react-test-renderer is deprecated')) consoleError(...args);
    };
    t.after(() => (console.error = consoleError));

    const s = scope(t);
    const herald = await s.herald();
    const socket = s.io(herald.wsUrl, { transports: ['websocket'] });
    const toasts = [];
    let latest;
    function Bell() {
      latest = useNotifications('sio-user', {
        socket,
        onNotification: (n) => toasts.push(n.message),
      });
      return null;
    }
    let renderer;
    await act(async () => (renderer = TestRenderer.create(createElement(Bell))));
    t.after(() => act(async () => renderer.unmount()));
    const until = async (what, check) => {
      await eventually(what, async () => {
        await act(() => sleep(10));
        return check(latest);
      });
      return latest;
    };
    await until('connected', (r) => r.isConnected);
    await eventually(
      'herald has the user',
      async () => (await user(herald.control, 'sio-user')).online,
    );
    const pushed = [];
    for (const message of ['one', 'two']) {
      pushed.push(await push(herald.control, 'sio-user', { id: `like-${message}`, message }));
    }
    let r = await until('two notifications', (r) => r.notifications.length === 2);
    assert.deepEqual(
      r.notifications.map((n) => [n.id, n.message, n.read, n.offset]),
      [
        ['like-two', 'two', false, pushed[1].offset],
        ['like-one', 'one', false, pushed[0].offset],
      ],
    );
    assert.deepEqual(toasts, ['one', 'two']);
    assert.equal(r.unreadCount, 2);
    await act(async () => r.markAsRead('like-one'));
    assert.equal(latest.unreadCount, 1);
    await act(async () => latest.markAsRead());
    assert.equal(latest.unreadCount, 0);
    await act(async () => renderer.unmount());
    // The socket stays connected (it is the app's); the hook unsubscribed it.
    assert.equal(socket.connected, true);
    await eventually(
      'unsubscribed on unmount',
      async () => (await push(herald.control, 'sio-user', { message: 'after' })).sockets === 0,
    );
  },
);
