// The admin page in a real browser: headless Chromium opens herald's `/admin` behind
// `--api-key`, types the key, and reads from the page itself the live counts moving as clients
// connect and pushes go out, a user's sockets, a push sent from its form reaching a client, and
// the configuration with the key masked. Screenshots are taken on the way: written to `docs/`
// with HERALD_UPDATE_SCREENSHOTS=1 (those the README shows), to a temporary directory
// otherwise.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'node:test';
import { fileURLToPath } from 'node:url';

import WebSocket from 'ws';

import { devtools, launchChromium } from './chromium.js';
import {
  eventually,
  once,
  recordAll,
  recordRaw,
  scope,
  subscribeRaw,
  TEST_TIMEOUT,
} from './harness.js';

const KEY = 'admin-page-key-3b9d71';
// The page polls once a second; the browser may take a few seconds to start.
const PAGE_PATIENCE = 30_000;
const limit = { timeout: 2 * TEST_TIMEOUT };

const UPDATE = process.env.HERALD_UPDATE_SCREENSHOTS === '1';
const DOCS = fileURLToPath(new URL('../../docs/', import.meta.url));

// `{event, data}` as MessagePack, for a map of two short strings: all a subscribe needs.
function msgpackEvent(event, data) {
  const str = (s) => {
    const b = Buffer.from(s, 'utf8');
    assert.ok(b.length < 32);
    return Buffer.concat([Buffer.from([0xa0 | b.length]), b]);
  };
  return Buffer.concat([Buffer.from([0x82]), str('event'), str(event), str('data'), str(data)]);
}

// The page, driven over the DevTools protocol.
class Page {
  constructor(cdp) {
    this.cdp = cdp;
  }

  // Evaluates `expression` in the page (awaiting a promise) and returns its value.
  async eval(expression) {
    const { result, exceptionDetails } = await this.cdp.send('Runtime.evaluate', {
      expression,
      awaitPromise: true,
      returnByValue: true,
    });
    if (exceptionDetails) throw new Error(`${expression}: ${JSON.stringify(exceptionDetails)}`);
    return result.value;
  }

  // Waits until `expression` is truthy in the page, across navigations; returns its value.
  until(what, expression) {
    return eventually(
      what,
      () => this.eval(expression).catch(() => undefined),
      PAGE_PATIENCE,
    );
  }

  // The number a chart's legend shows for `key` (`sockets.raw_json`, `pushes.total`, ...).
  value(key) {
    return this.eval(
      `(() => { const e = document.querySelector('[data-key="${key}"]');` +
        ' return e ? Number(e.dataset.value) : null; })()',
    );
  }

  async type(selector, text) {
    await this.eval(`document.querySelector('${selector}').focus()`);
    await this.eval(`document.querySelector('${selector}').select?.()`);
    await this.cdp.send('Input.insertText', { text });
  }

  click(selector) {
    return this.eval(`document.querySelector('${selector}').click()`);
  }

  // A PNG of the element `selector` (of the whole page for `null`), its top `maxHeight` pixels
  // at most, saved as `name`.
  async screenshot(dir, name, selector = null, maxHeight = Infinity) {
    const rect = await this.eval(
      selector === null
        ? '({ x: 0, y: 0, width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight })'
        : `(() => { const r = document.querySelector('${selector}').getBoundingClientRect();` +
            ' return { x: 0, y: r.y + scrollY - 8, width: document.documentElement.clientWidth, height: r.height + 16 }; })()',
    );
    const { data } = await this.cdp.send('Page.captureScreenshot', {
      format: 'png',
      captureBeyondViewport: true,
      clip: { ...rect, height: Math.min(rect.height, maxHeight), scale: 1 },
    });
    const png = Buffer.from(data, 'base64');
    // The PNG signature, and more than a blank image's few hundred bytes.
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    assert.ok(png.length > 10_000, `${name} is ${png.length} bytes`);
    writeFileSync(join(dir, name), png);
    return png;
  }
}

test('the admin page: log in, live counts, user lookup, push form, configuration', limit, async (t) => {
  const s = scope(t);
  const herald = await s.herald({ args: ['--api-key', KEY, '--workers', '2'] });
  const shots = UPDATE ? DOCS : mkdtempSync(join(tmpdir(), 'herald-admin-shots-'));
  mkdirSync(shots, { recursive: true });
  if (!UPDATE) t.after(() => rmSync(shots, { recursive: true, force: true }));

  const chromium = launchChromium(`${herald.control}/admin`, ['--window-size=1280,900']);
  t.after(() => chromium.close());
  const cdp = await devtools(chromium);
  t.after(() => cdp.close());
  await cdp.send('Emulation.setDeviceMetricsOverride', {
    width: 1280,
    height: 900,
    deviceScaleFactor: 1,
    mobile: false,
  });
  const page = new Page(cdp);

  // Without a session: the login form. A wrong key is refused and said so.
  await page.until('the login form', `document.body?.dataset.page === 'login'`);
  await page.type('#key', 'not-the-key');
  await page.click('#login button');
  await page.until('the refusal shown', `document.getElementById('login-error').textContent === 'Wrong key'`);
  await page.type('#key', KEY);
  await page.screenshot(shots, 'admin-login.png', '.login');
  await page.click('#login button');
  await page.until('the dashboard', `document.body?.dataset.page === 'admin'`);
  await page.until('the first poll', `document.querySelector('[data-key="sockets.raw_json"]')`);
  assert.equal(await page.value('sockets.raw_json'), 0);
  assert.equal(await page.value('users.total'), 0);

  // Clients of every protocol: alice on all four, bob on Socket.IO.
  const raw = await s.ws(herald.wsUrl);
  await subscribeRaw(raw, recordRaw(raw), 'alice');
  const packed = new WebSocket(`${herald.wsUrl.replace(/^http/, 'ws')}/ws?format=msgpack`);
  s.defer(() => packed.terminate());
  await once(packed, 'open');
  const packedReply = once(packed, 'message');
  packed.send(msgpackEvent('subscribe', 'alice'));
  await packedReply;
  const sioSockets = [];
  for (const [userId, transports] of [
    ['alice', ['websocket']],
    ['alice', ['polling']],
    ['bob', ['websocket']],
  ]) {
    const socket = s.io(herald.wsUrl, { transports, upgrade: false });
    const events = recordAll(socket);
    socket.on('connect', () => socket.emit('subscribe', userId));
    const first = await events.next();
    assert.equal(first.event, 'subscribed', JSON.stringify(first));
    sioSockets.push({ socket, events, userId });
  }

  for (const [key, want] of [
    ['sockets.raw_json', 1],
    ['sockets.raw_msgpack', 1],
    ['sockets.socketio_websocket', 2],
    ['sockets.socketio_polling', 1],
    ['users.total', 2],
  ]) {
    await eventually(`${key} = ${want} on the page`, async () => (await page.value(key)) === want, PAGE_PATIENCE);
  }
  const workers = (await page.value('workers.0')) + (await page.value('workers.1'));
  assert.equal(workers, 5, 'the per-worker connections add up');

  // Pushes and deliveries move.
  for (let i = 0; i < 3; i += 1) {
    const res = await fetch(`${herald.control}/v1/users/alice/notifications`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ n: i }),
    });
    assert.equal(res.status, 202, await res.text());
  }
  await eventually('3 pushes on the page', async () => (await page.value('pushes.total')) === 3, PAGE_PATIENCE);
  await eventually(
    '12 deliveries on the page',
    async () => (await page.value('deliveries.total')) === 12,
    PAGE_PATIENCE,
  );

  // The user lookup lists alice's four sockets.
  await page.type('#lookup-user', 'alice');
  await page.click('#lookup button');
  const rows = await page.until(
    "alice's sockets listed",
    `(() => { const r = [...document.querySelectorAll('#devices tbody tr')]
        .map((tr) => [...tr.children].map((td) => td.textContent));
        return r.length === 4 ? r : null; })()`,
  );
  assert.deepEqual(
    rows.map((r) => r[1]).sort(),
    ['raw_json', 'raw_msgpack', 'socketio_polling', 'socketio_websocket'],
  );
  for (const r of rows) assert.equal(r[2], '127.0.0.1');
  const ids = rows.map((r) => r[0]);
  for (const { socket, userId } of sioSockets) {
    if (userId === 'alice') assert.ok(ids.includes(socket.id), `${socket.id} in ${ids}`);
  }

  // The push form reaches bob's client, and shows herald's answer.
  const bob = sioSockets.find((c) => c.userId === 'bob');
  await page.type('#push-user', 'bob');
  await page.eval(`document.getElementById('push-body').value = '{"title":"from the admin page"}'`);
  await page.click('#push button');
  const got = await bob.events.next();
  assert.equal(got.event, 'notification');
  assert.equal(got.args[0].title, 'from the admin page');
  const answer = await page.until(
    "herald's answer shown",
    `document.getElementById('push-answer').dataset.status && document.getElementById('push-answer').textContent`,
  );
  assert.match(answer, /^202 \{"sockets":1/);

  // The configuration: the key masked, where each value came from.
  const config = await page.until(
    'the configuration',
    `(() => { const row = (f) => { const tr = document.querySelector('#config tr[data-flag="' + f + '"]');
        return tr && [...tr.children].map((td) => td.textContent); };
        const k = row('--api-key'); return k && { key: k, workers: row('--workers'), ping: row('--ping-interval') }; })()`,
  );
  assert.deepEqual(config.key, ['--api-key', '********', 'command line', 'HERALD_API_KEY']);
  assert.deepEqual(config.workers, ['--workers', '2', 'command line', 'HERALD_WORKERS']);
  assert.deepEqual(config.ping, ['--ping-interval', '25s', 'default', 'HERALD_PING_INTERVAL']);
  const text = await page.eval('document.documentElement.outerHTML');
  assert.ok(!text.includes(KEY), 'the key appears nowhere in the page');

  // A few more seconds of charts, then the pictures.
  for (let i = 0; i < 4; i += 1) {
    await fetch(`${herald.control}/v1/broadcast`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ notification: { n: i } }),
    });
    await new Promise((r) => setTimeout(r, 1000));
  }
  await page.eval('scrollTo(0, 0)');
  await page.screenshot(shots, 'admin-live.png', 'main > section:first-child');
  await page.screenshot(shots, 'admin-tools.png', 'main > section.columns');
  await page.screenshot(shots, 'admin-config.png', 'main > section:last-child', 640);
});
