// TLS on herald's public port (`--tls-cert`, `--tls-key`) with the clients front ends use: `ws`
// and socket.io-client in Node, trusting the test CA (tests/fixtures/tls) the way an operator's
// private CA is trusted, through `NODE_EXTRA_CA_CERTS` (package.json's `test` script sets it);
// Chromium, told to accept the test certificate by its key; the certificate swapped with SIGHUP
// while connections stay open; and plain text on the TLS port.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { connect as tlsConnect, rootCertificates } from 'node:tls';
import { fileURLToPath } from 'node:url';

import WebSocket from 'ws';

import { launchChromium, pageServer, reported } from './chromium.js';
import {
  assertNotification,
  assertRawNotification,
  eventually,
  metrics,
  notificationsUntil,
  once,
  PATIENCE,
  push,
  Queue,
  recordRaw,
  recordWithOffset,
  scope,
  subscribeRaw,
  TEST_TIMEOUT,
  user,
  withoutOffset,
} from './harness.js';

const limit = { timeout: TEST_TIMEOUT };

const FIXTURES = fileURLToPath(new URL('../fixtures/tls/', import.meta.url));
const fixture = (name) => join(FIXTURES, name);
const FIRST = new X509Certificate(readFileSync(fixture('server.pem')));
const SECOND = new X509Certificate(readFileSync(fixture('server2.pem')));

const LIKE = {
  type: 'LIKE',
  message: 'Someone liked your post',
  actorId: 'user-9',
  data: { postId: 'p1' },
};

// Node reads `NODE_EXTRA_CA_CERTS` once, when it starts: without the test CA in it nothing here can
// trust herald.
const CA = new X509Certificate(readFileSync(fixture('ca.pem')));
function assertCaTrusted() {
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  const pems = extra ? readFileSync(resolvePath(extra), 'latin1') : '';
  const certificates = pems.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g);
  assert.ok(
    (certificates ?? []).some(
      (pem) => new X509Certificate(pem).fingerprint256 === CA.fingerprint256,
    ),
    `NODE_EXTRA_CA_CERTS (${extra}) does not hold the test CA: run \`npm test\`, whose script ` +
      'sets NODE_EXTRA_CA_CERTS=../fixtures/tls/ca.pem',
  );
}

// herald on TLS with `cert` and `key` (the first fixture pair unless given), and its public URL
// by the name its certificate carries: `https://localhost:<port>`.
async function tlsHerald(s, opts = {}) {
  const { cert = fixture('server.pem'), key = fixture('server.key'), args = [] } = opts;
  assertCaTrusted();
  const herald = await s.herald({ args: ['--tls-cert', cert, '--tls-key', key, ...args] });
  return { ...herald, url: `https://localhost:${herald.publicPort}` };
}

// A fresh TLS connection to herald as `localhost`, verified against the default store (the test
// CA included): resolves with the SHA-256 fingerprint of the certificate it was given.
function servedFingerprint(port) {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: 'localhost', port, servername: 'localhost' }, () => {
      const { fingerprint256 } = socket.getPeerCertificate();
      socket.destroy();
      resolve(fingerprint256);
    });
    socket.setTimeout(PATIENCE, () => socket.destroy(new Error('no TLS handshake in time')));
    socket.on('error', reject);
  });
}

// A `ws` client's attempt to open `url` with `options`: resolves with the error it fails with, or
// fails the test if the WebSocket opens or herald answers with HTTP.
function wsRefused(s, url, options) {
  const ws = new WebSocket(url, options);
  s.defer(() => ws.terminate());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${url}: neither open nor failed`)), PATIENCE);
    ws.on('open', () => reject(new Error(`${url} opened`)));
    ws.on('unexpected-response', (_, res) =>
      reject(new Error(`${url}: herald answered HTTP ${res.statusCode}`)),
    );
    ws.on('error', (e) => {
      clearTimeout(timer);
      resolve(e);
    });
  });
}

// A raw `ws` client on herald's `/ws` over TLS, subscribed to `userId`: `{ ws, messages, closed }`,
// `closed` being every `close` event it has had.
async function rawClient(s, herald, userId) {
  const ws = await s.ws(herald.url);
  const closed = [];
  ws.on('close', (code) => closed.push(code));
  const messages = recordRaw(ws);
  await subscribeRaw(ws, messages, userId);
  return { ws, messages, closed };
}

// A socket.io-client socket on herald over TLS that subscribes to `userId` on every `connect`,
// as the front end does; resolves once subscribed, with its notifications (`recordWithOffset`)
// and every `disconnect` it has had.
async function ioClient(s, herald, userId, opts) {
  const socket = s.io(herald.url, opts);
  const subscribed = recordWithOffset(socket, 'subscribed');
  const notifications = recordWithOffset(socket, 'notification');
  const disconnects = [];
  socket.on('disconnect', (reason) => disconnects.push(reason));
  socket.on('connect', () => socket.emit('subscribe', userId));
  const data = await subscribed.next();
  assert.deepEqual(data, { userId, socketId: socket.id, offset: subscribed.lastOffset });
  return { socket, notifications, disconnects };
}

test('ws over wss://localhost trusts the test CA, subscribes and gets pushes', limit, async (t) => {
  const s = scope(t);
  const herald = await tlsHerald(s);
  const { ws, messages } = await rawClient(s, herald, 'u-wss');
  const socket = ws._socket;
  assert.equal(socket.authorized, true, `verified: ${socket.authorizationError}`);
  assert.equal(socket.getProtocol(), 'TLSv1.3');
  assert.equal(socket.getPeerCertificate().fingerprint256, FIRST.fingerprint256);

  const pushed = await push(herald.control, 'u-wss', LIKE);
  assert.deepEqual(withoutOffset(pushed), { sockets: 1 });
  assertRawNotification(await messages.next(), LIKE, pushed.offset);
  // Big enough to span several TLS records.
  const big = { message: 'x'.repeat(100_000) };
  const bigPushed = await push(herald.control, 'u-wss', big);
  assertRawNotification(await messages.next(), big, bigPushed.offset);
  assert.equal((await metrics(herald.control)).herald_tls_handshakes_total, 1);
});

for (const [name, opts] of [
  ['websocket', { transports: ['websocket'] }],
  ['polling', { transports: ['polling'], upgrade: false }],
]) {
  test(`socket.io-client over https://localhost, ${name} only`, limit, async (t) => {
    const s = scope(t);
    const herald = await tlsHerald(s);
    const { socket, notifications } = await ioClient(s, herald, `u-${name}`, opts);
    assert.equal(socket.io.engine.transport.name, name);

    for (const sent of [LIKE, { type: 'TEST', message: 'second' }]) {
      const pushed = await push(herald.control, `u-${name}`, sent);
      assert.deepEqual(withoutOffset(pushed), { sockets: 1 });
      assertNotification(await notifications.next(), sent);
      assert.equal(notifications.lastOffset, pushed.offset);
    }
    await push(herald.control, `u-${name}`, { message: 'sentinel' });
    assert.deepEqual(await notificationsUntil(notifications, 'sentinel'), []);
    assert.equal(socket.io.engine.transport.name, name);
  });
}

test('socket.io-client over https://localhost: polling, then wss', limit, async (t) => {
  const s = scope(t);
  const herald = await tlsHerald(s);
  const { socket, notifications, disconnects } = await ioClient(s, herald, 'u-up');
  const engine = socket.io.engine;
  const id = socket.id;

  const pushed = await push(herald.control, 'u-up', LIKE);
  assert.deepEqual(withoutOffset(pushed), { sockets: 1 });
  assertNotification(await notifications.next(), LIKE);

  if (engine.transport.name !== 'websocket') await once(engine, 'upgrade');
  assert.equal(engine.transport.name, 'websocket');
  const after = { type: 'TEST', message: 'after the upgrade' };
  const afterPushed = await push(herald.control, 'u-up', after);
  assert.deepEqual(withoutOffset(afterPushed), { sockets: 1 });
  await push(herald.control, 'u-up', { message: 'sentinel' });
  const before = await notificationsUntil(notifications, 'sentinel');
  assert.equal(before.length, 1, JSON.stringify(before));
  assertNotification(before[0], after);
  assert.equal(socket.id, id, 'the same session');
  assert.deepEqual(disconnects, []);
});

test('clients that do not trust the certificate refuse it', limit, async (t) => {
  const s = scope(t);
  const herald = await tlsHerald(s);
  const url = `wss://localhost:${herald.publicPort}/ws`;

  // Trusting some other CA (one of Node's public roots) instead of the default store.
  const otherCa = await wsRefused(s, url, { ca: [rootCertificates[0]] });
  assert.equal(otherCa.code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', otherCa.message);
  // The test CA trusted, but the certificate checked against another name.
  const otherName = await wsRefused(s, url, { servername: 'example.com' });
  assert.equal(otherName.code, 'ERR_TLS_CERT_ALTNAME_INVALID', otherName.message);
  // socket.io-client trusting the other CA, on either transport: a connect_error, no session.
  for (const transport of ['websocket', 'polling']) {
    const socket = s.io(herald.url, {
      transports: [transport],
      reconnection: false,
      ca: [rootCertificates[0]],
    });
    const error = await once(socket, 'connect_error');
    // The TLS error underneath: in the ErrorEvent of `ws`, or the XMLHttpRequest of polling.
    const cause = transport === 'websocket' ? error.description?.error : error.context?.statusText;
    assert.equal(cause?.code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', `${transport}: ${error.message}`);
    assert.equal(socket.connected, false);
  }

  // No handshake was completed; herald still serves a client that trusts it.
  assert.equal((await metrics(herald.control)).herald_tls_handshakes_total, 0);
  const { messages } = await rawClient(s, herald, 'u-after');
  const pushed = await push(herald.control, 'u-after', LIKE);
  assertRawNotification(await messages.next(), LIKE, pushed.offset);
});

test('SIGHUP swaps the certificate: open connections stay, new ones get it', limit, async (t) => {
  const s = scope(t);
  const dir = mkdtempSync(join(tmpdir(), 'herald-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  copyFileSync(fixture('server.pem'), cert);
  copyFileSync(fixture('server.key'), key);
  const herald = await tlsHerald(s, { cert, key });
  assert.equal(await servedFingerprint(herald.publicPort), FIRST.fingerprint256);

  const oldRaw = await rawClient(s, herald, 'u-hup');
  const oldIo = await ioClient(s, herald, 'u-hup', { transports: ['websocket'] });
  const oldIoId = oldIo.socket.id;
  const reconnects = [];
  oldIo.socket.io.on('reconnect_attempt', (n) => reconnects.push(n));

  copyFileSync(fixture('server2.pem'), cert);
  copyFileSync(fixture('server2.key'), key);
  process.kill(herald.pid, 'SIGHUP');
  await eventually(
    'a new handshake to get the second certificate',
    async () => (await servedFingerprint(herald.publicPort)) === SECOND.fingerprint256,
  );
  assert.match(herald.log(), /TLS certificate reloaded/);

  const newRaw = await rawClient(s, herald, 'u-hup');
  assert.equal(newRaw.ws._socket.getPeerCertificate().fingerprint256, SECOND.fingerprint256);
  const newIo = await ioClient(s, herald, 'u-hup', { transports: ['websocket'] });
  // The open ones still hold the session they agreed with the first certificate.
  assert.equal(oldRaw.ws._socket.getPeerCertificate().fingerprint256, FIRST.fingerprint256);

  // Every client, old and new, gets each push once.
  const everyone = async (sent) => {
    const pushed = await push(herald.control, 'u-hup', sent);
    assert.deepEqual(withoutOffset(pushed), { sockets: 4 });
    for (const { messages } of [oldRaw, newRaw]) {
      assertRawNotification(await messages.next(), sent, pushed.offset);
    }
    for (const { notifications } of [oldIo, newIo]) {
      assertNotification(await notifications.next(), sent);
      assert.equal(notifications.lastOffset, pushed.offset);
    }
  };
  await everyone({ type: 'TEST', message: 'after the reload' });
  const stillOpen = () => {
    assert.equal(oldRaw.ws.readyState, WebSocket.OPEN);
    assert.deepEqual(oldRaw.closed, [], 'the old ws was never closed');
    assert.equal(oldIo.socket.id, oldIoId, 'the old Socket.IO session is the same');
    assert.deepEqual(oldIo.disconnects, [], 'the old socket.io-client never disconnected');
    assert.deepEqual(reconnects, [], 'nor tried to reconnect');
  };
  stillOpen();

  // A key file that does not load: herald says so, stays up, and keeps the second certificate.
  writeFileSync(key, '-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n');
  process.kill(herald.pid, 'SIGHUP');
  await eventually('the failed reload in the log', () =>
    /TLS certificate not reloaded/.test(herald.log()),
  );
  assert.equal(await servedFingerprint(herald.publicPort), SECOND.fingerprint256);
  await everyone({ type: 'TEST', message: 'after the failed reload' });
  stillOpen();
  const late = await rawClient(s, herald, 'u-hup');
  assert.equal(late.ws._socket.getPeerCertificate().fingerprint256, SECOND.fingerprint256);
  assert.deepEqual(await user(herald.control, 'u-hup'), {
    userId: 'u-hup',
    online: true,
    sockets: 5,
    addresses: ['127.0.0.1'],
  });
});

// The base64 SHA-256 of a certificate's SubjectPublicKeyInfo (an `X509Certificate`): what
// Chromium's `--ignore-certificate-errors-spki-list` takes.
function spkiHash(certificate) {
  const spki = createPublicKey(certificate.toString()).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

// The page: the front end's snippet on its default transports (polling, then the upgrade to
// WebSocket), reporting back to the test once it is subscribed and upgraded, then each push.
function page(heraldUrl, userId, { reconnection = true } = {}) {
  return `<!doctype html>
<html>
<head><meta charset="utf-8"><title>herald notifications</title></head>
<body>
<script src="/socket.io.min.js"></script>
<script>
  const report = (kind, data) =>
    fetch('/report', { method: 'POST', body: JSON.stringify({ kind, data }) });
  window.addEventListener('error', (e) => report('page-error', String(e.message)));

  const socket = io(${JSON.stringify(heraldUrl)}, {
    reconnection: ${reconnection},
    reconnectionDelay: 1000,
    reconnectionAttempts: 5,
  });
  let firstTransport = null;
  let subscribed = null;
  let upgraded = false;
  const ready = () => {
    if (subscribed && upgraded) {
      report('ready', { ...subscribed, firstTransport, socketIdSeen: socket.id });
    }
  };
  // The engine is open, and its upgrade not yet tried (it may end before 'connect').
  socket.io.on('open', () => {
    firstTransport = firstTransport ?? socket.io.engine.transport.name;
    socket.io.engine.once('upgrade', (transport) => {
      upgraded = transport.name === 'websocket';
      ready();
    });
  });
  socket.on('connect', () => socket.emit('subscribe', ${JSON.stringify(userId)}));
  socket.on('connect_error', (e) => report('connect_error', String(e && e.message)));
  socket.on('subscribed', (data) => {
    subscribed = { data };
    ready();
  });
  socket.on('notification', (n, ...more) =>
    report('notification', { notification: n, more, transport: socket.io.engine.transport.name }),
  );
</script>
</body>
</html>
`;
}

// Serves the page from its own origin (`http://127.0.0.1:<port>`), starts herald on TLS allowing
// that origin, and opens the page in Chromium with `chromiumArgs`; returns
// `{ herald, reports, got }`, `got(kind)` waiting for the page's next report of that kind.
async function browserOnTls(t, s, userId, { chromiumArgs = [], reconnection } = {}) {
  const reports = new Queue('report from the page');
  let heraldUrl;
  const server = await pageServer(() => page(heraldUrl, userId, { reconnection }), reports);
  s.defer(() => {
    server.close();
    server.closeAllConnections();
  });
  const pageOrigin = `http://127.0.0.1:${server.address().port}`;
  const herald = await tlsHerald(s, { args: ['--cors-origins', pageOrigin] });
  heraldUrl = herald.url;
  const chromium = launchChromium(`${pageOrigin}/`, chromiumArgs);
  t.after(() => chromium.close());
  const got = async (kind) => {
    try {
      return await Promise.race([reported(reports, kind, chromium), chromium.spawnFailed]);
    } catch (e) {
      e.message += `\nherald: ${herald.log()}`;
      throw e;
    }
  };
  return { herald, reports, chromium, got };
}

test('Chromium accepts the certificate by its key: polling, upgrade, a push', limit, async (t) => {
  const s = scope(t);
  const userId = 'u-chromium';
  const { herald, got } = await browserOnTls(t, s, userId, {
    chromiumArgs: [`--ignore-certificate-errors-spki-list=${spkiHash(FIRST)}`],
  });

  const ready = await got('ready');
  assert.equal(ready.firstTransport, 'polling', 'polling first');
  assert.deepEqual(withoutOffset(ready.data), { userId, socketId: ready.socketIdSeen });

  const pushed = await push(herald.control, userId, LIKE);
  assert.deepEqual(withoutOffset(pushed), { sockets: 1 });
  const { notification, more, transport } = await got('notification');
  assertNotification(notification, LIKE);
  assert.deepEqual(more, [pushed.offset]);
  assert.equal(transport, 'websocket', 'delivered on the upgraded transport');
  const m = await metrics(herald.control);
  assert.ok(m.herald_tls_handshakes_total >= 2, 'polling and the WebSocket, both over TLS');
});

test('Chromium without the certificate accepted cannot connect', limit, async (t) => {
  const s = scope(t);
  const { herald, reports, chromium } = await browserOnTls(t, s, 'u-refused', {
    reconnection: false,
  });
  const first = await Promise.race([reports.next(30_000), chromium.spawnFailed]);
  assert.deepEqual(first, { kind: 'connect_error', data: 'xhr poll error' });
  // Chromium reached herald and gave up during the handshake, with an alert: herald completed
  // none.
  await eventually('the refused handshake counted', async () =>
    (await metrics(herald.control)).herald_tls_failures_total >= 1,
  );
  assert.equal((await metrics(herald.control)).herald_tls_handshakes_total, 0);
});

// Writes `request` on a plain TCP connection to `port` and resolves with everything received
// until the connection is closed; fails if it is not closed within PATIENCE.
function plainExchange(port, requestText) {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    const chunks = [];
    socket.setTimeout(PATIENCE, () => {
      socket.destroy();
      reject(new Error('the connection was not closed'));
    });
    socket.on('connect', () => socket.write(requestText));
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', (e) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
    socket.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

test('plain http:// and ws:// on the TLS port get no HTTP answer', limit, async (t) => {
  const s = scope(t);
  const herald = await tlsHerald(s);
  const port = herald.publicPort;

  // What herald sends back to plain text: nothing it could read as HTTP, a TLS alert at most.
  const got = await plainExchange(
    port,
    'GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: localhost\r\n\r\n',
  );
  assert.ok(!got.toString('latin1').startsWith('HTTP/'), `plain text answered: ${got}`);
  assert.ok(
    got.length === 0 || got[0] === 0x15,
    `a TLS alert (record type 21), if anything: ${got.toString('hex')}`,
  );

  // Node's own clients: an http:// request fails without a response.
  const httpError = await new Promise((resolve, reject) => {
    const req = request(`http://localhost:${port}/socket.io/?EIO=4&transport=polling`);
    req.on('response', (res) => reject(new Error(`an HTTP ${res.statusCode} answer`)));
    req.on('error', resolve);
    req.end();
  });
  assert.match(httpError.code, /^(HPE_|ECONNRESET$)/, httpError.message);
  // And a ws:// WebSocket never opens.
  const wsError = await wsRefused(s, `ws://localhost:${port}/ws`);
  assert.match(wsError.code, /^(HPE_|ECONNRESET$)/, wsError.message);

  await eventually('the plain-text sessions counted as TLS failures', async () =>
    (await metrics(herald.control)).herald_tls_failures_total >= 3,
  );
  // herald goes on serving TLS clients.
  const { messages } = await rawClient(s, herald, 'u-after-plain');
  const io = await ioClient(s, herald, 'u-after-plain');
  const pushed = await push(herald.control, 'u-after-plain', LIKE);
  assert.deepEqual(withoutOffset(pushed), { sockets: 2 });
  assertRawNotification(await messages.next(), LIKE, pushed.offset);
  assertNotification(await io.notifications.next(), LIKE);
});
