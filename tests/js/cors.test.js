// CORS as Socket.IO users write it: pages served from two origins, `http://127.0.0.1:<port>` and
// a `localhost` name on another port, run socket.io-client on HTTP long-polling only (the
// transport CORS applies to) against herald in headless Chromium. With `--cors-origins '*'` both
// connect; with a list (an exact origin, or a `*.localhost` pattern) only the page it admits
// does, and the other is refused by the browser, not by herald.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { launchChromium, pageServer, reported } from './chromium.js';
import { assertNotification, push, Queue, scope, TEST_TIMEOUT, withoutOffset } from './harness.js';

const limit = { timeout: TEST_TIMEOUT };

// The page: socket.io-client on polling only, without reconnecting, which subscribes once
// connected and reports what it receives. When it cannot connect it finds out why: the same
// request made again with `fetch` in `cors` mode fails as the client's did, while in `no-cors`
// mode (whose answer the page may not read) it goes through. So herald answered, and the
// browser kept the answer from the page: a CORS refusal.
function page(heraldUrl, userId) {
  return `<!doctype html>
<html>
<head><meta charset="utf-8"><title>herald over polling</title></head>
<body>
<script src="/socket.io.min.js"></script>
<script>
  const report = (kind, data) =>
    fetch('/report', { method: 'POST', body: JSON.stringify({ kind, data }) });
  window.addEventListener('error', (e) => report('page-error', String(e.message)));
  const herald = ${JSON.stringify(heraldUrl)};
  const socket = io(herald, { transports: ['polling'], reconnection: false });
  socket.on('connect', () => socket.emit('subscribe', ${JSON.stringify(userId)}));
  socket.on('subscribed', (d) =>
    report('subscribed', { data: d, transport: socket.io.engine.transport.name }),
  );
  socket.on('notification', (n) => report('notification', n));
  socket.on('connect_error', async (e) => {
    const url = herald + '/socket.io/?EIO=4&transport=polling';
    const cors = await fetch(url, { mode: 'cors' }).then(() => 'read', (err) => err.name);
    const noCors = await fetch(url, { mode: 'no-cors' }).then((r) => r.type, (err) => err.name);
    report('connect_error', { message: String(e && e.message), cors, noCors });
  });
</script>
</body>
</html>
`;
}

// A page server on 127.0.0.1, to be opened as `http://<host>:<port>`: Chromium resolves
// `localhost` and every name under it to loopback by itself. Returns the page's origin and
// `open(heraldUrl, userId)`, which launches Chromium on it and resolves with `got(kind)`.
async function pageAt(t, s, host) {
  const reports = new Queue(`report from the page on ${host}`);
  let html = '';
  const server = await pageServer(() => html, reports);
  s.defer(() => {
    server.close();
    server.closeAllConnections();
  });
  const origin = `http://${host}:${server.address().port}`;
  return {
    origin,
    open(herald, userId) {
      html = page(herald.wsUrl, userId);
      const chromium = launchChromium(`${origin}/`);
      t.after(() => chromium.close());
      return async (kind) => {
        try {
          return await Promise.race([reported(reports, kind, chromium), chromium.spawnFailed]);
        } catch (e) {
          e.message += `\npage ${origin}\nherald: ${herald.log()}`;
          throw e;
        }
      };
    },
  };
}

// The page `got` reports from subscribes over polling, and shows a push made to its user.
async function connects(got, herald, userId) {
  const { data, transport } = await got('subscribed');
  assert.equal(transport, 'polling');
  assert.deepEqual(withoutOffset(data), { userId, socketId: data.socketId });
  const sent = { type: 'CORS', message: `to ${userId}` };
  const pushed = await push(herald.control, userId, sent);
  assert.deepEqual(withoutOffset(pushed), { sockets: 1 });
  assertNotification(await got('notification'), sent);
}

// The page `got` reports from cannot connect, and it is the browser's CORS check that stops it.
async function refusedByCors(got) {
  const why = await got('connect_error');
  assert.deepEqual(why, { message: 'xhr poll error', cors: 'TypeError', noCors: 'opaque' });
}

test("--cors-origins '*': pages from two origins both connect", limit, async (t) => {
  const s = scope(t);
  const a = await pageAt(t, s, '127.0.0.1');
  const b = await pageAt(t, s, 'localhost');
  const herald = await s.herald({ args: ['--cors-origins', '*'] });
  const gotA = a.open(herald, 'user-a');
  const gotB = b.open(herald, 'user-b');
  await Promise.all([connects(gotA, herald, 'user-a'), connects(gotB, herald, 'user-b')]);
});

test('--cors-origins with an exact origin: only that page connects', limit, async (t) => {
  const s = scope(t);
  const allowed = await pageAt(t, s, '127.0.0.1');
  const other = await pageAt(t, s, 'localhost');
  const herald = await s.herald({
    args: ['--cors-origins', `http://other.example,${allowed.origin}`],
  });
  const gotAllowed = allowed.open(herald, 'user-a');
  const gotOther = other.open(herald, 'user-b');
  await Promise.all([connects(gotAllowed, herald, 'user-a'), refusedByCors(gotOther)]);
});

test('--cors-origins with a pattern: only a page under its domain connects', limit, async (t) => {
  const s = scope(t);
  const below = await pageAt(t, s, 'app.localhost');
  const other = await pageAt(t, s, '127.0.0.1');
  const port = new URL(below.origin).port;
  const herald = await s.herald({ args: ['--cors-origins', `http://*.localhost:${port}`] });
  const gotBelow = below.open(herald, 'user-a');
  const gotOther = other.open(herald, 'user-b');
  await Promise.all([connects(gotBelow, herald, 'user-a'), refusedByCors(gotOther)]);
});
