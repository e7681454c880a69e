// Shared helpers: a herald binary on loopback ports, Socket.IO and raw WebSocket clients that are
// closed when their test ends, the control API, and waits that fail with a clear message.

import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

import { io } from 'socket.io-client';
import WebSocket from 'ws';

// How long a test waits for something that should happen at once before it fails.
export const PATIENCE = 10_000;

// The herald binary: `HERALD_BIN`, or the release build at the root of this repository.
export const HERALD_BIN =
  process.env.HERALD_BIN ?? fileURLToPath(new URL('../../target/release/herald', import.meta.url));

// Each test's own time limit (`test(name, { timeout: TEST_TIMEOUT }, fn)`). The runner's
// `--test-timeout` bounds a whole file on Node 20, so it stays a much larger backstop.
export const TEST_TIMEOUT = 60_000;

// Every herald, redis-server and nginx still running (anything with `kill(signal)`), so that none
// outlives the test process, even one the runner ends with a signal after a file times out.
const running = new Set();
const killAll = () => {
  for (const child of running) child.kill('SIGKILL');
};
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    killAll();
    process.kill(process.pid, signal);
  });
}

// Starts herald with `--listen 127.0.0.1:${port ?? 0} --control 127.0.0.1:0` plus `args`, and
// resolves once its log says both listeners are bound.
//
// Returns `{ wsUrl, control, publicPort, controlPort, pid, stop, kill, log }`: `pid` is herald's
// process id, for a signal of the test's own (SIGHUP); `stop()` sends SIGTERM and resolves with the
// exit `{ code, signal }`; `kill()` sends SIGKILL, as a crash would, and resolves once herald is
// gone; `log()` is the tail of herald's stderr.
export function startHerald({ args = [], port, env } = {}) {
  const child = spawn(
    HERALD_BIN,
    ['--listen', `127.0.0.1:${port ?? 0}`, '--control', '127.0.0.1:0', ...args],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } },
  );
  running.add(child);
  const tail = [];
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    });
  });
  const log = () => tail.join('\n');

  return new Promise((resolve, reject) => {
    let started = false;
    let timer;
    const fail = (why) => {
      if (started) return;
      started = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`herald (${HERALD_BIN}) did not start: ${why}\n${log()}`));
    };
    child.on('error', (err) => fail(err.message));
    exited.then(({ code, signal }) => fail(`it exited (code ${code}, signal ${signal})`));
    timer = setTimeout(() => fail('no listening line in its log'), PATIENCE);

    // Reading on after the listening line keeps the pipe drained, so herald never blocks on it.
    createInterface({ input: child.stderr }).on('line', (line) => {
      tail.push(line);
      if (tail.length > 50) tail.shift();
      if (started || !line.includes('herald listening')) return;
      const publicAddr = /websocket=(\S+)/.exec(line)?.[1];
      const controlAddr = /control=(\S+)/.exec(line)?.[1];
      if (!publicAddr || !controlAddr) return fail(`cannot read the addresses in ${line}`);
      started = true;
      clearTimeout(timer);
      resolve({
        wsUrl: `http://${publicAddr}`,
        control: `http://${controlAddr}`,
        publicPort: Number(publicAddr.split(':').pop()),
        controlPort: Number(controlAddr.split(':').pop()),
        pid: child.pid,
        log,
        // SIGTERM, then SIGKILL if herald is still there well after its shutdown timeout.
        async stop() {
          if (child.exitCode === null && child.signalCode === null) {
            child.kill('SIGTERM');
            const forced = setTimeout(() => child.kill('SIGKILL'), 20_000);
            await exited;
            clearTimeout(forced);
          }
          return exited;
        },
        // SIGKILL: herald says goodbye to no one, neither its clients nor Redis.
        async kill() {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
          return exited;
        },
      });
    });
  });
}

// The redis-server to run: `REDIS_SERVER`, or `redis-server` on PATH (Debian's package, which
// `.ci/test` installs).
export const REDIS_SERVER = process.env.REDIS_SERVER ?? 'redis-server';

// A loopback port no one listens on right now.
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Whether something on 127.0.0.1:`port` answers Redis's PING with PONG.
function pingRedis(port) {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let got = '';
    const done = (ok) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 1_000);
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (data) => {
      got += data.toString();
      if (got.includes('\r\n')) done(got === '+PONG\r\n');
    });
  });
}

// Starts a redis-server of the test's own on a free loopback port (or `port`), without
// persistence, and resolves once it answers PING.
//
// Returns `{ port, url, kill, start, restart, log }`: `kill()` sends SIGKILL, as a crash would, and
// resolves once it is gone (its data with it); `start()` runs a new, empty one on the same port;
// `restart()` is both; `log()` is the tail of its output. Use `scope(t).redis()`, which kills it
// when the test ends; whatever happens, none outlives the test process.
export async function startRedis({ port } = {}) {
  // A free port may be taken by someone else before redis-server binds it: then another one.
  for (let attempt = 1; ; attempt++) {
    const r = redisOn(port ?? (await freePort()));
    try {
      await r.start();
      return r;
    } catch (e) {
      if (port !== undefined || attempt === 3 || !/in use/i.test(e.message)) throw e;
    }
  }
}

function redisOn(port) {
  const tail = [];
  let child = null;
  let exited = Promise.resolve();
  const r = {
    port,
    url: `redis://127.0.0.1:${port}`,
    log: () => tail.join('\n'),
    async start() {
      if (child) throw new Error(`redis-server on port ${port} is already running`);
      const c = spawn(
        REDIS_SERVER,
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      child = c;
      running.add(c);
      let spawnError = null;
      c.on('error', (e) => (spawnError = e));
      exited = new Promise((resolve) => {
        c.on('close', (code, signal) => {
          running.delete(c);
          if (child === c) child = null;
          resolve({ code, signal });
        });
      });
      for (const stream of [c.stdout, c.stderr]) {
        createInterface({ input: stream }).on('line', (line) => {
          tail.push(line);
          if (tail.length > 50) tail.shift();
        });
      }
      const deadline = Date.now() + PATIENCE;
      for (;;) {
        if (spawnError) {
          throw new Error(
            `${REDIS_SERVER} did not run (${spawnError.message}): Debian's redis-server package, ` +
              'which .ci/test installs, or REDIS_SERVER',
          );
        }
        if (child !== c) throw new Error(`redis-server on port ${port} exited:\n${r.log()}`);
        if (await pingRedis(port)) return r;
        if (Date.now() > deadline) {
          await r.kill();
          throw new Error(`redis-server on port ${port} does not answer PING:\n${r.log()}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async kill() {
      child?.kill('SIGKILL');
      await exited;
    },
    async restart() {
      await r.kill();
      return r.start();
    },
  };
  return r;
}

// The nginx to run: `NGINX`, or `nginx` on PATH, or Debian's `/usr/sbin/nginx` (the package
// `.ci/test` installs; /usr/sbin is not on every user's PATH).
export function nginxBinary() {
  if (process.env.NGINX) return process.env.NGINX;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    try {
      accessSync(join(dir, 'nginx'), constants.X_OK);
      return join(dir, 'nginx');
    } catch {
      // Not in this directory.
    }
  }
  return '/usr/sbin/nginx';
}

const README = fileURLToPath(new URL('../../README.md', import.meta.url));
const NGINX_MARKER = '<!-- nginx.conf: tests/js/proxy.test.js reads the block below -->';
const TLS_FIXTURES = fileURLToPath(new URL('../fixtures/tls/', import.meta.url));

// The nginx configuration of README.md's "Behind nginx" (the ```nginx block right after
// `NGINX_MARKER`), with only what a test cannot run as written replaced: the address of its one
// `listen ... ssl` line (by `127.0.0.1:<port>`, its parameters kept), the address of its one
// upstream `server` (by `127.0.0.1:<upstreamPort>`), and the files of `ssl_certificate` and
// `ssl_certificate_key` (by the test certificate for localhost and its key). Throws, saying what it
// expected, when the block is missing or no longer has the lines these replacements need: the
// tests run the README's configuration, never one of their own.
export function readmeNginxConfig({ port, upstreamPort }) {
  const fail = (why) => {
    throw new Error(
      `README.md's nginx configuration: ${why}. The proxy tests run the \`\`\`nginx block that ` +
        `follows the line ${NGINX_MARKER} with only these replaced: the address of its one ` +
        '`listen <address> ssl;`, of its one upstream `server <address>;`, and the files of ' +
        '`ssl_certificate` and `ssl_certificate_key`',
    );
  };
  const lines = readFileSync(README, 'utf8').split('\n');
  const marker = lines.findIndex((line) => line.trim() === NGINX_MARKER);
  if (marker < 0) fail('the marker line is missing');
  if (lines[marker + 1]?.trim() !== '```nginx') fail('no ```nginx block right after the marker');
  const end = lines.findIndex((line, i) => i > marker + 1 && line.trim() === '```');
  if (end < 0) fail('the ```nginx block after the marker is not closed');
  let config = lines.slice(marker + 2, end).join('\n');

  // Replaces the one directive `pattern` (global, multiline, at the start of a line: comments
  // aside) matches, with `replace`'s answer.
  const replaceOne = (what, pattern, replace) => {
    const found = [...config.matchAll(pattern)];
    if (found.length !== 1) {
      fail(
        `expected exactly one ${what}, found ${found.length}` +
          (found.length ? `: ${found.map((m) => m[0].trim()).join(' | ')}` : ''),
      );
    }
    config = config.replace(pattern, replace);
  };
  const quoted = (path) => JSON.stringify(path);
  replaceOne(
    '`listen <address> ssl;` (and no other listen line)',
    /^([ \t]*)listen[ \t]+([^;\s]+)((?:[ \t]+[^;\s]+)*)[ \t]*;/gm,
    (line, indent, address, params) => {
      if (!params.split(/\s+/).includes('ssl')) {
        fail(`its listen line has no \`ssl\`: ${line.trim()}`);
      }
      return `${indent}listen 127.0.0.1:${port}${params};`;
    },
  );
  replaceOne(
    'upstream `server <address>;` (one herald)',
    /^([ \t]*)server[ \t]+([^;\s{]+)([^;{\n]*);/gm,
    (_, indent, address, params) => `${indent}server 127.0.0.1:${upstreamPort}${params};`,
  );
  replaceOne(
    '`ssl_certificate <file>;`',
    /^([ \t]*)ssl_certificate[ \t]+([^;\s]+)[ \t]*;/gm,
    (_, indent) => `${indent}ssl_certificate ${quoted(join(TLS_FIXTURES, 'server.pem'))};`,
  );
  replaceOne(
    '`ssl_certificate_key <file>;`',
    /^([ \t]*)ssl_certificate_key[ \t]+([^;\s]+)[ \t]*;/gm,
    (_, indent) => `${indent}ssl_certificate_key ${quoted(join(TLS_FIXTURES, 'server.key'))};`,
  );
  return config;
}

// A complete nginx.conf around the README's block (`readmeNginxConfig`), everything nginx writes
// kept in `dir`: one worker in the foreground, as root's own user when run as root (`dir` is
// root's), file descriptors for thousands of proxied connections (two each).
function nginxConf(dir, http) {
  const file = (name) => JSON.stringify(join(dir, name));
  const asRoot = process.getuid?.() === 0;
  return [
    "# Written by tests/js/harness.js: README.md's nginx configuration (Deployment, Behind",
    '# nginx) on test ports and certificates; everything nginx writes goes to this directory.',
    'daemon off;',
    'master_process on;',
    'worker_processes 1;',
    ...(asRoot ? ['user root;'] : []),
    `pid ${file('nginx.pid')};`,
    `error_log ${file('error.log')} notice;`,
    'worker_rlimit_nofile 20000;',
    'events {',
    '    worker_connections 8192;',
    '}',
    'http {',
    `    access_log ${file('access.log')};`,
    `    client_body_temp_path ${file('client_body')};`,
    `    proxy_temp_path ${file('proxy')};`,
    `    fastcgi_temp_path ${file('fastcgi')};`,
    `    uwsgi_temp_path ${file('uwsgi')};`,
    `    scgi_temp_path ${file('scgi')};`,
    '',
    ...http.split('\n').map((line) => (line === '' ? '' : `    ${line}`)),
    '}',
    '',
  ].join('\n');
}

// Whether something accepts TCP connections on 127.0.0.1:`port`.
function accepts(port) {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    const done = (ok) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 1_000);
    socket.on('error', () => done(false));
    socket.on('connect', () => done(true));
  });
}

// Starts nginx with the README's configuration (`readmeNginxConfig`) in front of herald's public
// port `upstreamPort`, listening with TLS on a free loopback port, checked first with `nginx -t`;
// resolves once the port accepts.
//
// Returns `{ port, url, wsUrl, config, stop, log }`: `url` is `https://localhost:<port>` and
// `wsUrl` `wss://localhost:<port>` (the test certificate's name); `config` the whole nginx.conf;
// `stop()` sends SIGTERM (nginx's fast shutdown, which closes every connection) and resolves once
// its processes are gone; `log()` its error log. Use `scope(t).nginx()`, which stops it when the
// test ends; whatever happens, none outlives the test process.
export async function startNginx({ upstreamPort }) {
  // A free port may be taken by someone else before nginx binds it: then another one.
  for (let attempt = 1; ; attempt++) {
    try {
      return await nginxOn(await freePort(), upstreamPort);
    } catch (e) {
      if (attempt === 3 || !/in use/i.test(e.message)) throw e;
    }
  }
}

async function nginxOn(port, upstreamPort) {
  const bin = nginxBinary();
  const http = readmeNginxConfig({ port, upstreamPort });
  const dir = mkdtempSync(join(tmpdir(), 'herald-nginx-'));
  const conf = join(dir, 'nginx.conf');
  const errorLog = join(dir, 'error.log');
  const text = nginxConf(dir, http);
  writeFileSync(conf, text);
  const readLog = () => {
    try {
      return readFileSync(errorLog, 'utf8');
    } catch {
      return '';
    }
  };
  // `-p` and `-e` keep nginx from the prefix and error log it was built with, even before it
  // has read the configuration.
  const argv = ['-p', join(dir, ''), '-e', errorLog, '-c', conf];
  const checked = spawnSync(bin, ['-t', ...argv], { encoding: 'utf8' });
  if (checked.error) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(
      `${bin} did not run (${checked.error.message}): Debian's nginx package, which .ci/test ` +
        'installs, or NGINX',
    );
  }
  if (checked.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`nginx -t refuses the configuration:\n${checked.stderr}\n${text}`);
  }

  // Its own process group, so that its workers go with the master whatever ends it (killed with
  // the test process, its directory goes too).
  const child = spawn(bin, argv, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  const group = {
    kill(signal) {
      try {
        process.kill(-child.pid, signal);
      } catch {
        // Already gone.
      }
      if (signal === 'SIGKILL') rmSync(dir, { recursive: true, force: true });
    },
  };
  running.add(group);
  const stderr = [];
  createInterface({ input: child.stderr }).on('line', (line) => stderr.push(line));
  let spawnError = null;
  child.on('error', (e) => (spawnError = e));
  let gone = false;
  const exited = new Promise((resolve) => {
    child.on('close', (code, signal) => {
      gone = true;
      running.delete(group);
      resolve({ code, signal });
    });
  });
  const log = () => [...stderr, readLog()].join('\n');
  const stop = async () => {
    if (!gone) {
      child.kill('SIGTERM');
      const forced = setTimeout(() => group.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(forced);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + PATIENCE;
  for (;;) {
    if (spawnError) {
      running.delete(group);
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`${bin} did not run: ${spawnError.message}`);
    }
    if (gone) {
      const why = log();
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`nginx on port ${port} exited:\n${why}`);
    }
    if (await accepts(port)) break;
    if (Date.now() > deadline) {
      const why = log();
      await stop();
      throw new Error(`nginx does not accept on port ${port}:\n${why}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return {
    port,
    url: `https://localhost:${port}`,
    wsUrl: `wss://localhost:${port}`,
    config: text,
    log,
    stop,
  };
}

// A test's resources, released when the test ends however it ends: clients are closed first,
// then every nginx the test started is stopped, then every herald, then every redis-server it
// started is killed.
export function scope(t) {
  const clients = [];
  const nginxes = [];
  const heralds = [];
  const redises = [];
  t.after(async () => {
    for (const close of clients) await close();
    await Promise.all(nginxes.map((n) => n.stop()));
    await Promise.all(heralds.map((h) => h.stop()));
    await Promise.all(redises.map((r) => r.kill()));
  });
  return {
    // Starts herald (see `startHerald`).
    async herald(opts) {
      const h = await startHerald(opts);
      heralds.push(h);
      return h;
    },
    // Starts a redis-server (see `startRedis`).
    async redis(opts) {
      const r = await startRedis(opts);
      redises.push(r);
      return r;
    },
    // Starts nginx with the README's configuration in front of herald (see `startNginx`).
    async nginx(opts) {
      const n = await startNginx(opts);
      nginxes.push(n);
      return n;
    },
    // A socket.io-client socket with its own connection.
    io(url, opts = {}) {
      const socket = io(url, { forceNew: true, ...opts });
      clients.push(() => socket.disconnect());
      return socket;
    },
    // A raw WebSocket to herald's `/ws` endpoint; resolves once open.
    async ws(wsUrl, path = '/ws') {
      const ws = new WebSocket(wsUrl.replace(/^http/, 'ws') + path);
      clients.push(() => ws.terminate());
      await once(ws, 'open');
      return ws;
    },
    // Runs `close` (awaited, when it returns a promise) when the test ends, before heralds are
    // stopped.
    defer(close) {
      clients.push(close);
    },
  };
}

// A TCP proxy on a free loopback port to herald's public port `upstream` (which a test may change
// between connections), standing for a client's network. `cut()` resets every connection through
// it; `refuse()` resets new ones as they come, and `hold()` keeps them accepted but not forwarded,
// both until `restore()` (which forwards those held). `accepted` counts connections accepted,
// `waiting` those held; `url` is herald's `/ws` through it.
export async function tcpProxy(s, upstream) {
  const pairs = new Set();
  const waiting = [];
  let held = false;
  let refusing = false;
  const server = createServer((down) => {
    proxy.accepted += 1;
    if (refusing) return down.resetAndDestroy();
    down.on('error', () => {});
    const forward = () => {
      if (down.destroyed) return;
      const up = createConnection({ host: '127.0.0.1', port: proxy.upstream });
      const pair = [down, up];
      pairs.add(pair);
      const gone = () => {
        pairs.delete(pair);
        down.destroy();
        up.destroy();
      };
      up.on('error', gone).on('close', gone);
      down.on('close', gone);
      down.pipe(up);
      up.pipe(down);
    };
    if (held) waiting.push(forward);
    else forward();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy = {
    upstream,
    accepted: 0,
    port: server.address().port,
    url: `ws://127.0.0.1:${server.address().port}/ws`,
    cut() {
      for (const [down, up] of pairs) {
        down.resetAndDestroy();
        up.destroy();
      }
      pairs.clear();
    },
    refuse() {
      refusing = true;
    },
    hold() {
      held = true;
    },
    restore() {
      refusing = false;
      held = false;
      for (const forward of waiting.splice(0)) forward();
    },
    get waiting() {
      return waiting.length;
    },
  };
  s.defer(() => {
    proxy.cut();
    server.close();
  });
  return proxy;
}

// Resolves with the first argument of the next `event` on `emitter` (a Socket.IO socket or
// manager, an Engine.IO socket, a `ws` WebSocket, any EventEmitter); rejects after `timeoutMs`.
export function once(emitter, event, timeoutMs = PATIENCE) {
  return new Promise((resolve, reject) => {
    const onEvent = (value) => {
      clearTimeout(timer);
      resolve(value);
    };
    const timer = setTimeout(() => {
      emitter.off(event, onEvent);
      reject(new Error(`no '${event}' event within ${timeoutMs} ms`));
    }, timeoutMs);
    emitter.once(event, onEvent);
  });
}

// Values arriving one by one, taken in order with `next`, so that a test can read what came
// before a given value without waiting for silence.
export class Queue {
  #items = [];
  #waiters = [];

  constructor(what) {
    this.what = what;
  }

  push(item) {
    const waiter = this.#waiters.shift();
    if (waiter) waiter(item);
    else this.#items.push(item);
  }

  // Resolves with the next value; rejects if none arrives within `timeoutMs`.
  next(timeoutMs = PATIENCE) {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift());
    return new Promise((resolve, reject) => {
      const waiter = (item) => {
        clearTimeout(timer);
        resolve(item);
      };
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(new Error(`no ${this.what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  // Values already received and not yet taken.
  get pending() {
    return [...this.#items];
  }
}

// Every `event` the Socket.IO `socket` receives from now on, by its first argument.
export function record(socket, event) {
  const q = new Queue(`'${event}' event`);
  socket.on(event, (value) => q.push(value));
  return q;
}

// A notification offset is `<epoch hex>-<seq>`, seq counting every push accepted in the epoch
// (0 before any). Asserts that form and returns `{ epoch, seq }`.
export function parseOffset(offset, what = 'an offset') {
  assert.equal(typeof offset, 'string', `${what} is a string: ${JSON.stringify(offset)}`);
  const m = /^([0-9a-f]+)-(\d+)$/.exec(offset);
  assert.ok(m, `${what} is "<epoch hex>-<seq>": ${JSON.stringify(offset)}`);
  return { epoch: m[1], seq: Number(m[2]) };
}

// `value` without its `offset`, which has to be there and be an offset: so that the rest can be
// compared exactly (a push's answer, a `subscribed` answer).
export function withoutOffset(value) {
  assert.ok(
    value !== null && typeof value === 'object' && Object.hasOwn(value, 'offset'),
    `an offset in ${JSON.stringify(value)}`,
  );
  const { offset, ...rest } = value;
  parseOffset(offset, `the offset in ${JSON.stringify(value)}`);
  return rest;
}

// The events herald sends with their offset as an extra last argument (`notification`,
// `subscribed`): takes them with `next`, which asserts exactly one argument after the first and
// that it is an offset, and resolves with the first; `offsets` are those of the events taken, in
// order, and `lastOffset` the latest.
class OffsetQueue extends Queue {
  offsets = [];

  async next(timeoutMs) {
    const args = await super.next(timeoutMs);
    assert.equal(
      args.length,
      2,
      `${this.what} with its offset as the last argument: ${JSON.stringify(args)}`,
    );
    parseOffset(args[1], `the last argument of ${this.what} ${JSON.stringify(args)}`);
    this.offsets.push(args[1]);
    return args[0];
  }

  get lastOffset() {
    return this.offsets.at(-1);
  }

  get pending() {
    return super.pending.map((args) => args[0]);
  }
}

// Every `event` the Socket.IO `socket` receives from now on, for an event herald sends with its
// offset last (`notification`, `subscribed`): see `OffsetQueue`.
export function recordWithOffset(socket, event) {
  const q = new OffsetQueue(`'${event}' event`);
  socket.on(event, (...args) => q.push(args));
  return q;
}

// Every event the Socket.IO `socket` receives from now on, as `{ event, args }`, `args` being all
// of its arguments (herald sends an offset after the data of some).
export function recordAll(socket) {
  const q = new Queue('event');
  socket.onAny((event, ...args) => q.push({ event, args }));
  return q;
}

// Every message the raw WebSocket `ws` receives from now on, parsed as JSON.
export function recordRaw(ws) {
  const q = new Queue('message on the raw WebSocket');
  ws.on('message', (data) => q.push(JSON.parse(data.toString())));
  return q;
}

// Takes notifications from `queue` until the one whose `message` is `until`, and returns those
// before it: "exactly once" is checked by order (a sentinel pushed last), not by a quiet period.
export async function notificationsUntil(queue, until, timeoutMs = PATIENCE) {
  const seen = [];
  for (;;) {
    const n = await queue.next(timeoutMs);
    if (n?.message === until) return seen;
    seen.push(n);
  }
}

// Subscribes the raw WebSocket to `userId` and returns the `subscribed` data: exactly
// `{ userId, socketId, offset }` (no `recovered`: the subscribe gives no offset).
export async function subscribeRaw(ws, messages, userId) {
  ws.send(JSON.stringify({ event: 'subscribe', data: userId }));
  const reply = await messages.next();
  assert.deepEqual(Object.keys(reply).sort(), ['data', 'event'], JSON.stringify(reply));
  assert.equal(reply.event, 'subscribed', JSON.stringify(reply));
  const { socketId } = reply.data;
  assert.equal(typeof socketId, 'string', JSON.stringify(reply));
  assert.notEqual(socketId, '');
  assert.deepEqual(withoutOffset(reply.data), { userId: String(userId), socketId });
  return reply.data;
}

// Asserts that the raw `/ws` message `m` is exactly `{ event: 'notification', data, offset }`,
// `data` being `sent` plus its timestamp (`assertNotification`), and, when `offset` is given (what
// the push answered), that it came with that offset. Returns its offset.
export function assertRawNotification(m, sent, offset) {
  assert.deepEqual(Object.keys(m ?? {}).sort(), ['data', 'event', 'offset'], JSON.stringify(m));
  assert.equal(m.event, 'notification', JSON.stringify(m));
  assertNotification(m.data, sent);
  parseOffset(m.offset, `the offset of ${JSON.stringify(m)}`);
  if (offset !== undefined) assert.equal(m.offset, offset, 'the offset its push answered');
  return m.offset;
}

// Pushes `notification` to `userId` over the control API; asserts 202 and returns the body
// (`{ sockets, offset }`: compare `withoutOffset(body)`).
export async function push(control, userId, notification) {
  const res = await fetch(`${control}/v1/users/${encodeURIComponent(userId)}/notifications`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(notification),
  });
  const text = await res.text();
  assert.equal(res.status, 202, `push to ${userId}: ${res.status} ${text}`);
  return JSON.parse(text);
}

const PROTOCOLS = ['raw_json', 'raw_msgpack', 'socketio_websocket', 'socketio_polling'];

// `GET /v1/users/{userId}`: `{ userId, online, sockets }`, and `addresses` while online (in a
// cluster also `nodes` and `cluster`). The answer's `devices`, this node's sockets one by one, are
// checked here and left out of what it returns: each has a socket id, a known protocol, one of
// `addresses`, a worker and an RFC 3339 `subscribedAt`, no socket twice; at most `sockets` are
// listed (a socket being closed still counts in `sockets` but is not listed), and a cluster node
// holding none of the user's sockets lists none.
export async function user(control, userId) {
  const res = await fetch(`${control}/v1/users/${encodeURIComponent(userId)}`);
  const text = await res.text();
  assert.equal(res.status, 200, `user ${userId}: ${res.status} ${text}`);
  const { devices, moreDevices, ...rest } = JSON.parse(text);
  if (!rest.online || (devices === undefined && 'nodes' in rest)) {
    assert.equal(devices, undefined, `no devices without sockets here: ${text}`);
    return rest;
  }
  assert.ok(Array.isArray(devices), `devices while online: ${text}`);
  assert.equal(new Set(devices.map((d) => d.socketId)).size, devices.length, text);
  for (const d of devices) {
    const keys = ['address', 'protocol', 'socketId', 'subscribedAt', 'worker'];
    assert.deepEqual(Object.keys(d).sort(), keys, text);
    assert.ok(typeof d.socketId === 'string' && d.socketId !== '', text);
    assert.ok(PROTOCOLS.includes(d.protocol), `protocol ${d.protocol}: ${text}`);
    assert.ok(rest.addresses.includes(d.address), `address ${d.address} among addresses: ${text}`);
    assert.ok(Number.isInteger(d.worker) && d.worker >= 0, text);
    assert.ok(!Number.isNaN(Date.parse(d.subscribedAt)), `subscribedAt: ${text}`);
  }
  if (moreDevices !== undefined) assert.equal(moreDevices, true, text);
  if (moreDevices) assert.ok(devices.length === 100 && rest.sockets > 100, text);
  else assert.ok(devices.length <= rest.sockets, `at most one device per socket: ${text}`);
  return rest;
}

// `GET /metrics`: every sample by name, labels included as written
// (`herald_closes_total{code="1000"}`). The event loop itself renders them, so whatever a client
// has already received is counted.
export async function metrics(control) {
  const res = await fetch(`${control}/metrics`);
  const text = await res.text();
  assert.equal(res.status, 200, `metrics: ${res.status} ${text}`);
  const samples = {};
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples[line.slice(0, at)] = Number(line.slice(at + 1));
  }
  return samples;
}

// Polls `check` (sync or async, truthy when done) until it holds; fails after `timeoutMs`,
// with `what` and the last value `check` returned.
export async function eventually(what, check, timeoutMs = PATIENCE) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await check();
    if (last) return last;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// Asserts that `n` is `sent` plus an ISO 8601 `timestamp` string.
export function assertNotification(n, sent) {
  const { timestamp, ...rest } = n ?? {};
  assert.deepEqual(rest, sent);
  assert.equal(typeof timestamp, 'string', `timestamp in ${JSON.stringify(n)}`);
  assert.match(timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/);
  assert.ok(!Number.isNaN(Date.parse(timestamp)), `${timestamp} is a date`);
}

// An HS256 JWT (RFC 7519) carrying `claims`, signed with `secret`: what an auth server would
// hand a front end for herald's `--jwt-secret`.
export function signHs256(secret, claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const signed = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${signed}.${createHmac('sha256', secret).update(signed).digest('base64url')}`;
}
