// A real browser: headless Chromium loads a page from another origin that runs the front end's
// Socket.IO snippet against herald, and reports what it receives back to the test.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { launchChromium, pageServer, reported } from './chromium.js';
import {
  assertNotification,
  parseOffset,
  push,
  Queue,
  scope,
  TEST_TIMEOUT,
  withoutOffset,
} from './harness.js';

const limit = { timeout: TEST_TIMEOUT };

// The page: the front end's snippet, plus `report`, which posts what happens back to the test.
function page(heraldUrl, userId) {
  return `<!doctype html>
<html>
<head><meta charset="utf-8"><title>herald notifications</title></head>
<body>
<ul id="notifications"></ul>
<script src="/socket.io.min.js"></script>
<script>
  const report = (kind, data) =>
    fetch('/report', { method: 'POST', body: JSON.stringify({ kind, data }) });
  window.addEventListener('error', (e) => report('page-error', String(e.message)));
  const escape = (s) => String(s).replace(/[&<>"']/g, (c) => '&#' + c.charCodeAt(0) + ';');

  const userId = ${JSON.stringify(userId)};
  const socket = io(${JSON.stringify(heraldUrl)}, {
    reconnection: true,
    reconnectionDelay: 1000,
    reconnectionDelayMax: 5000,
    reconnectionAttempts: 5,
  });
  socket.on('connect', () => socket.emit('subscribe', userId));
  socket.on('connect_error', (e) => report('connect_error', String(e && e.message)));
  // herald sends the offset as a last argument after the data of both events.
  socket.on('subscribed', (d, ...more) =>
    report('subscribed', { data: d, more, socketIdSeen: socket.id }),
  );
  socket.on('notification', (n, ...more) => {
    document.getElementById('notifications').insertAdjacentHTML(
      'beforeend',
      '<li>' + escape(n.type) + ': ' + escape(n.message) + '</li>',
    );
    const shown = document.getElementById('notifications').lastElementChild.textContent;
    report('notification', { notification: n, more, shown });
  });
</script>
</body>
</html>
`;
}

test('headless Chromium: the front-end snippet subscribes and shows a push', limit, async (t) => {
  const s = scope(t);
  const reports = new Queue('report from the page');
  let heraldUrl;
  const userId = 'user-123';
  const server = await pageServer(() => page(heraldUrl, userId), reports);
  s.defer(() => {
    server.close();
    server.closeAllConnections();
  });
  const pageOrigin = `http://127.0.0.1:${server.address().port}`;

  const herald = await s.herald({ args: ['--cors-origins', pageOrigin] });
  heraldUrl = herald.wsUrl;

  const chromium = launchChromium(`${pageOrigin}/`);
  t.after(() => chromium.close());
  const got = (kind) => Promise.race([reported(reports, kind, chromium), chromium.spawnFailed]);

  const { data: subscribed, more, socketIdSeen } = await got('subscribed');
  assert.equal(typeof subscribed.socketId, 'string');
  assert.deepEqual(withoutOffset(subscribed), { userId, socketId: subscribed.socketId });
  assert.equal(subscribed.socketId, socketIdSeen, 'socketId is the socket.id the page sees');
  assert.deepEqual(more, [subscribed.offset], 'the offset again, as the last argument');

  const sent = {
    type: 'LIKE',
    message: 'Someone liked <your> post',
    actorId: 'user-9',
    data: { postId: 'p1' },
  };
  const pushed = await push(herald.control, userId, sent);
  assert.deepEqual(withoutOffset(pushed), { sockets: 1 });
  const { epoch, seq } = parseOffset(subscribed.offset);
  assert.deepEqual(parseOffset(pushed.offset), { epoch, seq: seq + 1 }, 'the next offset');
  const { notification, more: after, shown } = await got('notification');
  assertNotification(notification, sent);
  assert.deepEqual(after, [pushed.offset], 'the offset pushed, as the last argument');
  assert.equal(shown, 'LIKE: Someone liked <your> post');
});
