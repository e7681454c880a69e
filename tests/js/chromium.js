// Headless Chromium for the browser tests: launching it on a page, serving that page and the
// Socket.IO client bundle from another origin than herald's, and reading what the page reports.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import WebSocket from 'ws';

import { once, Queue } from './harness.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

// Chromium can take several seconds to start, and the client backs off between attempts.
const BROWSER_PATIENCE = 30_000;

const CLIENT_JS = readFileSync(
  fileURLToPath(new URL('node_modules/socket.io-client/dist/socket.io.min.js', import.meta.url)),
);

// Serves `html` at `/`, the client bundle at `/socket.io.min.js` and the scripts of `scripts`
// (`{ '/path.js': contents }`); every JSON body posted to `/report` goes to `reports`.
export async function pageServer(html, reports, scripts = {}) {
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html());
    } else if (req.method === 'GET' && req.url === '/socket.io.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(CLIENT_JS);
    } else if (req.method === 'GET' && Object.hasOwn(scripts, req.url)) {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(scripts[req.url]);
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

// Launches headless Chromium on `url` with a fresh profile, and `extraArgs` after its usual flags
// (such as `--ignore-certificate-errors-spki-list=...` for a test certificate); `close()` ends it
// and removes the profile.
export function launchChromium(url, extraArgs = []) {
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
      ...extraArgs,
      url,
    ],
    // Its own process group, so that closing it also ends the renderer and helper processes.
    { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
  );
  const tail = [];
  // `--remote-debugging-port=0` picks a free port, which Chromium prints once it listens.
  let devtoolsListening;
  const devtoolsUrl = new Promise((resolve) => (devtoolsListening = resolve));
  // Chromium's own log, less its complaints about the missing desktop bus.
  createInterface({ input: child.stderr }).on('line', (line) => {
    const devtools = /DevTools listening on (ws:\/\/\S+)/.exec(line);
    if (devtools) devtoolsListening(devtools[1]);
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
    // The browser's DevTools WebSocket URL (see `devtools`).
    devtoolsUrl,
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

// A DevTools protocol connection to the whole browser that `chromium` (from `launchChromium`)
// runs: `send(method, params, sessionId)` resolves with the command's result or rejects with its
// error (`sessionId` names a target attached in flat mode, whose commands go over this same
// connection); `close()`.
export async function browserDevtools(chromium) {
  let timer;
  const url = await Promise.race([
    chromium.devtoolsUrl,
    chromium.spawnFailed,
    new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no DevTools URL from Chromium\nchromium: ${chromium.log()}`)),
        BROWSER_PATIENCE,
      );
    }),
  ]).finally(() => clearTimeout(timer));
  const ws = new WebSocket(url, { perMessageDeflate: false });
  await once(ws, 'open', BROWSER_PATIENCE);
  let lastId = 0;
  const pending = new Map();
  ws.on('message', (data) => {
    const message = JSON.parse(data.toString());
    const call = pending.get(message.id);
    if (!call) return; // An event (Network.enable starts some): none is used here.
    pending.delete(message.id);
    if (message.error) call.reject(new Error(`${call.method}: ${JSON.stringify(message.error)}`));
    else call.resolve(message.result);
  });
  const send = (method, params = {}, sessionId = undefined) =>
    new Promise((resolve, reject) => {
      const id = ++lastId;
      pending.set(id, { method, resolve, reject });
      ws.send(JSON.stringify({ id, method, params, sessionId }));
    });
  return { send, close: () => ws.terminate() };
}

// A DevTools protocol session on the page that `chromium` (from `launchChromium`) opened, for
// what a page cannot do to itself, such as taking the browser offline:
// `send(method, params)` resolves with the command's result or rejects with its error; `close()`.
export async function devtools(chromium) {
  const browser = await browserDevtools(chromium);
  const { targetInfos } = await browser.send('Target.getTargets');
  const page = targetInfos.find((target) => target.type === 'page');
  assert.ok(page, `a page target among ${JSON.stringify(targetInfos)}`);
  const { sessionId } = await browser.send('Target.attachToTarget', {
    targetId: page.targetId,
    flatten: true,
  });
  return {
    send: (method, params) => browser.send(method, params, sessionId),
    close: browser.close,
  };
}

// Waits up to `BROWSER_PATIENCE` for the page's next report of `kind`; any other report on the
// way fails the test, with what the page and Chromium said.
export async function reported(reports, kind, chromium) {
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

// Serves `html` from its own origin and opens it in headless Chromium, both ended with the test
// (`s` is the test's `scope`); returns `got(kind)`, which resolves with the page's next report of
// that kind. A page that gets no further fails with herald's log too: what herald refused and why
// shows only there.
export async function openPage(t, s, herald, html, scripts = {}) {
  const reports = new Queue('report from the page');
  const server = await pageServer(() => html, reports, scripts);
  s.defer(() => {
    server.close();
    server.closeAllConnections();
  });
  const chromium = launchChromium(`http://127.0.0.1:${server.address().port}/`);
  t.after(() => chromium.close());
  return async (kind) => {
    try {
      return await Promise.race([reported(reports, kind, chromium), chromium.spawnFailed]);
    } catch (e) {
      e.message += `\nherald: ${herald.log()}`;
      throw e;
    }
  };
}
