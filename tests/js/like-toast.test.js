// examples/like-toast as its README tells it: herald, the example's own backend (server.js) and
// its built page in headless Chromium, with three windows: bob twice (two devices) and alice.
// Alice clicks Like on a post of bob's; both of bob's windows show the toast and the unread badge.
// Then one of bob's windows loses its network for 5 s while alice likes again: the other window
// shows it at once, the one that was offline once the network is back, once, with nothing lost.
//
// Losing the network: that window reaches herald through a TCP proxy of the test's, which resets
// its connections and refuses new ones for 5 s, while DevTools tells the window it is offline.
// DevTools' offline emulation alone does not do: it fires the page's `offline` event and fails
// new requests, but leaves an open WebSocket delivering (socket.io-client closes its transport on
// that event by itself; a plain WebSocket stays open and keeps receiving).
// Run over herald's own client and over socket.io-client (`?transport=socketio`), each also with
// JWT auth (the backend signing tokens of 4 s, herald run with the same secret: the pages must
// refresh them). And the backend alone: its answers to each of herald's.
//
// The page is dist/ of examples/like-toast: built here (`node build-if-needed.js`, which needs
// `npm ci` in that folder) when missing or older than its sources or herald-client's.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { browserDevtools, launchChromium } from './chromium.js';
import {
  assertRawNotification,
  eventually,
  freePort,
  metrics,
  recordRaw,
  scope,
  subscribeRaw,
  tcpProxy,
  user,
} from './harness.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/like-toast/', import.meta.url));

// Chromium starting, a client backing off while offline, reconnecting after: a browser's pace.
const BROWSER_PATIENCE = 30_000;
const OFFLINE_MS = 5_000;
const limit = { timeout: 180_000 };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

before(() => {
  const run = spawnSync(process.execPath, ['build-if-needed.js'], {
    cwd: EXAMPLE,
    encoding: 'utf8',
  });
  assert.equal(
    run.status,
    0,
    `building examples/like-toast (npm ci there first):\n${run.stdout}\n${run.stderr}`,
  );
});

// Every child still running, killed if the test process goes first.
const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
after(() => {
  for (const child of children) child.kill('SIGKILL');
});

// Starts `node server.js` of the example on a free port against `herald`; resolves with its
// origin once it listens. Stopped when the test ends.
async function startExample(s, herald, env = {}) {
  const port = await freePort();
  // The test script's CA path is relative to tests/js, and the backend needs none.
  const { NODE_EXTRA_CA_CERTS, ...inherited } = process.env;
  const child = spawn(process.execPath, ['server.js'], {
    cwd: EXAMPLE,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...inherited,
      PORT: String(port),
      HOST: '127.0.0.1',
      HERALD_CONTROL: herald.control,
      HERALD_URL: `ws://127.0.0.1:${herald.publicPort}/ws`,
      ...env,
    },
  });
  children.add(child);
  const exited = new Promise((resolve) => child.on('exit', resolve));
  exited.then(() => children.delete(child));
  const tail = [];
  let listening;
  const ready = new Promise((resolve) => (listening = resolve));
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => {
      tail.push(line);
      if (tail.length > 50) tail.shift();
      if (line.includes('like-toast listening')) listening();
    });
  }
  s.defer(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  let timer;
  await Promise.race([
    ready,
    exited.then((code) => assert.fail(`server.js exited (${code}):\n${tail.join('\n')}`)),
    new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`server.js did not listen:\n${tail.join('\n')}`)),
        BROWSER_PATIENCE,
      );
    }),
  ]).finally(() => clearTimeout(timer));
  return { origin: `http://127.0.0.1:${port}`, log: () => tail.join('\n') };
}

// Records every toast the page puts up, from its first render on: toasts leave after a few
// seconds, and the test counts them all.
const RECORD_TOASTS = `
  window.toastsSeen = [];
  new MutationObserver((records) => {
    for (const r of records) {
      for (const node of r.addedNodes) {
        if (node.nodeType !== 1) continue;
        const toasts = node.matches('.toast') ? [node] : node.querySelectorAll('.toast');
        for (const t of toasts) window.toastsSeen.push({ id: t.dataset.id, text: t.textContent });
      }
    }
  }).observe(document, { childList: true, subtree: true });
`;

// What a window shows, read from its DOM.
const READ_PAGE = `(() => ({
  connected: document.querySelector('.connection')?.dataset.connected === 'true',
  badge: document.querySelector('.bell .badge')?.textContent ?? null,
  items: [...document.querySelectorAll('.notification')].map((li) => ({
    id: li.dataset.id,
    message: li.querySelector('.message').textContent,
    unread: li.classList.contains('unread'),
  })),
  toastsSeen: window.toastsSeen,
  toastsUp: [...document.querySelectorAll('.toast')].map((t) => t.textContent),
  status: Object.fromEntries(
    [...document.querySelectorAll('.post')].map((p) => [
      p.dataset.post,
      p.querySelector('.like-status')?.textContent ?? '',
    ]),
  ),
}))()`;

// A DevTools session on the whole browser, opening windows of its own: each `window(url)` is a
// new window with its own session, that records its toasts from the start. Windows, not tabs: a
// tab behind another in its window is hidden, and Chromium slows a hidden page's timers.
async function browser(chromium) {
  const { send, close } = await browserDevtools(chromium);
  return {
    close,
    async window(pageUrl, name) {
      const { targetId } = await send('Target.createTarget', {
        url: 'about:blank',
        newWindow: true,
      });
      const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
      const cmd = (method, params) => send(method, params, sessionId);
      await cmd('Page.enable');
      await cmd('Page.addScriptToEvaluateOnNewDocument', { source: RECORD_TOASTS });
      await cmd('Page.navigate', { url: pageUrl });
      const evaluate = async (expression) => {
        const { result, exceptionDetails } = await cmd('Runtime.evaluate', {
          expression,
          returnByValue: true,
          awaitPromise: true,
        });
        if (exceptionDetails) {
          throw new Error(`${name}: ${expression}: ${JSON.stringify(exceptionDetails)}`);
        }
        return result.value;
      };
      const read = () => evaluate(READ_PAGE);
      return {
        name,
        read,
        // Waits until what the window shows passes `check`; fails with what it showed last.
        async until(what, check, timeoutMs = BROWSER_PATIENCE) {
          let last;
          try {
            return await eventually(
              `${name}: ${what}`,
              async () => {
                last = await read().catch((e) => ({ error: e.message }));
                return check(last) ? last : false;
              },
              timeoutMs,
            );
          } catch (e) {
            e.message += `\n${name} showed ${JSON.stringify(last, null, 1)}`;
            throw e;
          }
        },
        // A real click: the mouse pressed and released at the middle of the element.
        // The page renders its posts from a fetch of its own, so the element may come a little
        // after the bell says connected: it is waited for, not assumed.
        async click(selector) {
          const box = await eventually(`${name}: ${selector} is on the page and enabled`, () =>
            evaluate(`(() => {
              const el = document.querySelector(${JSON.stringify(selector)});
              if (!el || el.disabled) return false;
              el.scrollIntoView({ block: 'center' });
              const r = el.getBoundingClientRect();
              return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
            })()`),
          );
          for (const type of ['mouseMoved', 'mousePressed', 'mouseReleased']) {
            await cmd('Input.dispatchMouseEvent', {
              type,
              ...box,
              button: type === 'mouseMoved' ? 'none' : 'left',
              clickCount: type === 'mouseMoved' ? 0 : 1,
            });
          }
        },
        async network(online) {
          await cmd('Network.enable');
          await cmd('Network.emulateNetworkConditions', {
            offline: !online,
            latency: 0,
            downloadThroughput: -1,
            uploadThroughput: -1,
          });
        },
      };
    },
  };
}

const liked = (title) => `Alice liked your post "${title}"`;
const messages = (page) => page.items.map((i) => i.message);
const toasts = (page) => page.toastsSeen.map((t) => t.text.replace(/^♥\s*/, ''));

// Tokens the backend signs in the JWT runs live this long (seconds), shorter than the story: the
// pages must send fresh ones, or herald closes their sockets.
const TOKEN_TTL = 4;

// The story, over `transport` (`herald` or `socketio`), with JWT auth when `jwt`.
async function story(t, { transport, jwt }) {
  const s = scope(t);
  const secret = 'like-toast test secret, 32 bytes or more';
  const herald = await s.herald({
    args: jwt ? ['--jwt-secret', secret, '--jwt-leeway', '0'] : [],
  });
  const env = jwt ? { HERALD_JWT_SECRET: secret, TOKEN_TTL: String(TOKEN_TTL) } : {};
  const startedAt = Date.now();
  const example = await startExample(s, herald, env);
  // Bob's first device: the same backend, telling its page to reach herald through the link.
  const link = await tcpProxy(s, herald.publicPort);
  const linked = await startExample(s, herald, {
    ...env,
    HERALD_URL: `ws://127.0.0.1:${link.port}/ws`,
  });

  const chromium = launchChromium('about:blank');
  t.after(() => chromium.close());
  const cdp = await browser(chromium);
  t.after(() => cdp.close());
  const page = (who, origin = example.origin) =>
    `${origin}/?user=${who}${transport === 'socketio' ? '&transport=socketio' : ''}`;
  const bob1 = await cdp.window(page('bob', linked.origin), 'bob (first window)');
  const bob2 = await cdp.window(page('bob'), 'bob (second window)');
  const alice = await cdp.window(page('alice'), 'alice');
  const fail = (e) => {
    e.message += `\nserver.js: ${example.log()}\n${linked.log()}\nherald: ${herald.log()}\nchromium: ${chromium.log()}`;
    throw e;
  };

  try {
    for (const w of [bob1, bob2, alice]) await w.until('connected', (p) => p.connected);
    await eventually('herald holds both of bob’s sockets', async () => {
      return (await user(herald.control, 'bob')).sockets === 2;
    });

    // 1. Alice likes bob's first post: both of bob's windows show it.
    await alice.click('.post[data-post="p1"] button.like');
    await alice.until('the backend names the two windows notified', (p) =>
      /Bob was notified in 2 open tabs/.test(p.status.p1),
    );
    for (const bob of [bob1, bob2]) {
      const p = await bob.until('the first toast and badge 1', (p) => p.badge === '1');
      assert.deepEqual(toasts(p), [liked('Sourdough, third attempt')], `${bob.name}: toasts`);
      assert.deepEqual(messages(p), [liked('Sourdough, third attempt')], `${bob.name}: list`);
      assert.equal(p.items[0].unread, true);
    }
    const first = (await bob1.read()).items[0].id;
    assert.equal((await bob2.read()).items[0].id, first, 'the same notification id in both');

    // 2. Bob's first window loses its network for 5 s: herald sees one socket of bob's left.
    // Alice likes again meanwhile.
    const offlineAt = Date.now();
    link.refuse();
    link.cut();
    await bob1.network(false);
    await bob1.until('the bell sees the connection gone', (p) => !p.connected);
    await eventually('herald sees bob’s first window go', async () => {
      return (await user(herald.control, 'bob')).sockets === 1;
    });
    await alice.click('.post[data-post="p2"] button.like');
    await alice.until('the backend names the one window notified', (p) =>
      /Bob was notified in 1 open tab\b/.test(p.status.p2),
    );
    const second = await bob2.until('the second toast and badge 2', (p) => p.badge === '2');
    assert.deepEqual(toasts(second), [
      liked('Sourdough, third attempt'),
      liked('A walk along the river'),
    ]);
    assert.deepEqual(messages(second), [
      liked('A walk along the river'),
      liked('Sourdough, third attempt'),
    ]);
    const offline = await bob1.read();
    assert.equal(offline.badge, '1', 'bob’s offline window has not seen the second like');
    assert.equal(offline.toastsSeen.length, 1);

    await sleep(Math.max(0, offlineAt + OFFLINE_MS - Date.now()));
    link.restore();
    await bob1.network(true);
    const back = await bob1.until('back online: the missed like, badge 2', (p) => p.badge === '2');
    assert.equal(back.connected, true);
    assert.deepEqual(toasts(back), toasts(second), 'one toast for the missed like');
    assert.deepEqual(messages(back), messages(second));
    assert.deepEqual(
      back.items.map((i) => i.id),
      second.items.map((i) => i.id),
      'the same notifications, by id, as in the window that stayed online',
    );

    // 3. A last like after the reconnection: anything delivered twice by the recovery would
    // have come before it, since herald replays before live pushes.
    await eventually('herald holds both of bob’s sockets again', async () => {
      return (await user(herald.control, 'bob')).sockets === 2;
    });
    await alice.click('.post[data-post="p1"] button.like');
    for (const bob of [bob1, bob2]) {
      const p = await bob.until('the third toast and badge 3', (p) => p.badge === '3');
      assert.deepEqual(toasts(p), [
        liked('Sourdough, third attempt'),
        liked('A walk along the river'),
        liked('Sourdough, third attempt'),
      ]);
      assert.equal(new Set(p.items.map((i) => i.id)).size, 3, `${bob.name}: three distinct ids`);
    }

    // markAsRead: one from the dropdown, then all; the badge follows.
    await bob2.click('.bell');
    await bob2.click(`.notification[data-id="${first}"] button`);
    const one = await bob2.until('one marked read: badge 2', (p) => p.badge === '2');
    assert.deepEqual(
      one.items.map((i) => i.unread),
      [true, true, false],
    );
    await bob2.click('.mark-all');
    const none = await bob2.until('all read: no badge', (p) => p.badge === null);
    assert.ok(none.items.every((i) => !i.unread));

    // Alice's own bell stayed quiet: the likes were bob's.
    const a = await alice.read();
    assert.equal(a.badge, null);
    assert.deepEqual(a.toastsSeen, []);

    if (jwt) {
      // Past the first tokens' expiry: every socket is still there, none closed for it.
      await sleep(Math.max(0, startedAt + 2 * TOKEN_TTL * 1_000 - Date.now()));
      assert.equal((await user(herald.control, 'bob')).sockets, 2);
      assert.equal((await user(herald.control, 'alice')).sockets, 1);
      const m = await metrics(herald.control);
      assert.equal(m.herald_tokens_expired_total, 0, 'sockets closed at their token’s exp');
      assert.equal(m.herald_auth_failures_total, 0, 'tokens refused');
    }
  } catch (e) {
    fail(e);
  }
}

test(
  "like-toast over herald's client: the likes in both of bob's windows, one cut off for 5 s",
  limit,
  (t) => story(t, { transport: 'herald' }),
);

test('like-toast over socket.io-client (?transport=socketio): the same', limit, (t) =>
  story(t, { transport: 'socketio' }),
);

test("like-toast with JWT auth (4 s tokens) over herald's client", limit, (t) =>
  story(t, { transport: 'herald', jwt: true }),
);

test('like-toast with JWT auth (4 s tokens) over socket.io-client', limit, (t) =>
  story(t, { transport: 'socketio', jwt: true }),
);

// The backend alone: what POST /api/likes answers for each answer of herald's.
test(
  'server.js: a like is a push to the author; herald’s 429, 401 and absence answered',
  limit,
  async (t) => {
    const s = scope(t);
    const key = 'like-toast test key';
    // One push per second for a user, no burst: a second like at once is over it.
    const herald = await s.herald({
      args: ['--api-key', key, '--user-rate', '1', '--user-burst', '1'],
    });
    const example = await startExample(s, herald, { HERALD_API_KEY: key });
    const keyless = await startExample(s, herald);
    const like = async (origin, body) => {
      const res = await fetch(`${origin}/api/likes`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
      return {
        status: res.status,
        retryAfter: res.headers.get('retry-after'),
        body: await res.json(),
      };
    };

    const ws = await s.ws(herald.wsUrl);
    const messages = recordRaw(ws);
    await subscribeRaw(ws, messages, 'bob');

    // The second like right behind the first, within herald's second.
    const ok = await like(example.origin, { postId: 'p1', userId: 'carol' });
    const limited = await like(example.origin, { postId: 'p2', userId: 'carol' });
    assert.equal(ok.status, 200, JSON.stringify(ok));
    assert.equal(ok.body.notified, 'bob');
    assert.equal(ok.body.sockets, 1, 'herald’s count of bob’s sockets');
    assert.equal(ok.body.post.likes, 1);
    assertRawNotification(
      await messages.next(),
      {
        type: 'LIKE',
        message: 'Carol liked your post "Sourdough, third attempt"',
        actorId: 'carol',
        data: { postId: 'p1' },
      },
      ok.body.offset,
    );

    assert.equal(limited.status, 429, JSON.stringify(limited));
    assert.match(limited.retryAfter ?? '', /^[1-9]\d*$/, 'herald’s Retry-After passed on');
    assert.equal(limited.body.retryAfter, Number(limited.retryAfter));
    assert.equal(limited.body.post.likes, 1, 'the like counted, the notification not sent');

    const unauthorized = await like(keyless.origin, { postId: 'p4', userId: 'alice' });
    assert.equal(unauthorized.status, 502, JSON.stringify(unauthorized));
    assert.equal(unauthorized.body.error, 'herald answered 401');

    for (const [body, status] of [
      [{ postId: 'p9', userId: 'alice' }, 404],
      [{ postId: 'p1', userId: 'mallory' }, 400],
      [{ postId: 'p1', userId: 'constructor' }, 400],
      [{ postId: 'p1', userId: 'bob' }, 400],
      ['not json', 400],
    ]) {
      const r = await like(example.origin, body);
      assert.equal(r.status, status, `${JSON.stringify(body)}: ${JSON.stringify(r)}`);
    }

    await herald.stop();
    const down = await like(example.origin, { postId: 'p3', userId: 'bob' });
    assert.equal(down.status, 502, JSON.stringify(down));
    assert.equal(down.body.error, 'herald unreachable');
  },
);
