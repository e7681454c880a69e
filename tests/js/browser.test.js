// A real browser: headless Chromium loads a page from another origin that runs the front end's
// Socket.IO snippet against herald, and reports what it receives back to the test.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { assertNotification, push, Queue, scope, TEST_TIMEOUT } from './harness.js';

const limit = { timeout: TEST_TIMEOUT };

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

// Chromium can take several seconds to start, and the client backs off between attempts.
const BROWSER_PATIENCE = 30_000;

const CLIENT_JS = readFileSync(
  fileURLToPath(new URL('node_modules/socket.io-client/dist/socket.io.min.js', import.meta.url)),
);

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
  socket.on('subscribed', (d) => report('subscribed', { ...d, socketIdSeen: socket.id }));
  socket.on('notification', (n) => {
    document.getElementById('notifications').insertAdjacentHTML(
      'beforeend',
      '<li>' + escape(n.type) + ': ' + escape(n.message) + '</li>',
    );
    const shown = document.getElementById('notifications').lastElementChild.textContent;
    report('notification', { notification: n, shown });
  });
</script>
</body>
</html>
`;
}

// Serves `html` at `/` and the client bundle at `/socket.io.min.js`; every JSON body posted to
// `/report` goes to `reports`.
async function pageServer(html, reports) {
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html());
    } else if (req.method === 'GET' && req.url === '/socket.io.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(CLIENT_JS);
    } else if (req.method === 'POST' && req.url === '/report') {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        reports.push(JSON.parse(body));
        res.writeHead(204).end();
      });
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

// Launches headless Chromium on `url` with a fresh profile; `close()` ends it and removes the
// profile.
function launchChromium(url) {
  assert.ok(
    existsSync(CHROMIUM),
    `Chromium not found at ${CHROMIUM}: install it (apt-get install -y chromium) or set CHROMIUM`,
  );
  const profile = mkdtempSync(join(tmpdir(), 'herald-chromium-'));
  const child = spawn(
    CHROMIUM,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
      `--user-data-dir=${profile}`,
      '--remote-debugging-port=0',
      url,
    ],
    // Its own process group, so that closing it also ends the renderer and helper processes.
    { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
  );
  const tail = [];
  // Chromium's own log, less its complaints about the missing desktop bus.
  createInterface({ input: child.stderr }).on('line', (line) => {
    if (/dbus|^\s*$/i.test(line)) return;
    tail.push(line);
    if (tail.length > 20) tail.shift();
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const spawnFailed = new Promise((_, reject) => child.on('error', reject));
  spawnFailed.catch(() => {});
  return {
    log: () => tail.join('\n'),
    spawnFailed,
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {
          // Already gone.
        }
        const forced = setTimeout(() => {
          try {
            process.kill(-child.pid, 'SIGKILL');
          } catch {
            // Already gone.
          }
        }, 5_000);
        await exited;
        clearTimeout(forced);
      }
      rmSync(profile, { recursive: true, force: true, maxRetries: 5 });
    },
  };
}

// Waits up to `BROWSER_PATIENCE` for the page's next report of `kind`; any other report on the
// way fails the test, with what the page and Chromium said.
async function reported(reports, kind, chromium) {
  const seen = [];
  const deadline = Date.now() + BROWSER_PATIENCE;
  for (;;) {
    let r;
    try {
      r = await reports.next(Math.max(deadline - Date.now(), 0));
    } catch {
      assert.fail(
        `no '${kind}' report from the page within ${BROWSER_PATIENCE} ms ` +
          `(it reported ${JSON.stringify(seen)})\nchromium: ${chromium.log()}`,
      );
    }
    if (r.kind === kind) return r.data;
    // The client retries a failed connect by itself; note it and keep waiting.
    if (r.kind === 'connect_error') {
      seen.push(r);
      continue;
    }
    assert.fail(`the page reported ${JSON.stringify(r)} while waiting for '${kind}'`);
  }
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

  const subscribed = await got('subscribed');
  assert.equal(subscribed.userId, userId);
  assert.equal(typeof subscribed.socketId, 'string');
  assert.equal(
    subscribed.socketId,
    subscribed.socketIdSeen,
    'socketId is the socket.id the page sees',
  );

  const sent = {
    type: 'LIKE',
    message: 'Someone liked <your> post',
    actorId: 'user-9',
    data: { postId: 'p1' },
  };
  assert.deepEqual(await push(herald.control, userId, sent), { sockets: 1 });
  const { notification, shown } = await got('notification');
  assertNotification(notification, sent);
  assert.equal(shown, 'LIKE: Someone liked <your> post');
});
