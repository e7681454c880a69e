// Three herald nodes on one Redis; one user's socket on node 0; PUSHES pushes to that user
// through node 1's control API, one at a time on one keep-alive connection. For each node: the
// bytes and pushes it read from Redis and its CPU over the pushes, beside the same length of time
// idle just before. Writes a JSON summary to --out.
//
//   node benches/cluster/targeted.mjs --redis redis://127.0.0.1:6379 --out targeted.json
//   node benches/cluster/targeted.mjs --redis ... --user-rate 1000000   # with the Redis bucket
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const REDIS = arg('--redis');
const OUT = arg('--out', 'targeted.json');
const PUSHES = Number(arg('--pushes', process.env.PUSHES ?? 20000));
// A per-user rate high enough never to refuse: the bucket in Redis is checked on every push.
const USER_RATE = arg('--user-rate', '0');
const BIN = process.env.HERALD_BIN ?? fileURLToPath(new URL('../../target/release/herald', import.meta.url));
if (!REDIS) throw new Error('--redis URL is required');
const redisPort = new URL(REDIS).port;

const TICK = 100; // clock ticks a second (USER_HZ)
const cpuMs = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / TICK;
};
const redisCpu = () => {
  const out = spawnSync('redis-cli', ['-p', redisPort, 'info', 'cpu']).stdout.toString();
  return [...out.matchAll(/^used_cpu_(?:user|sys):([\d.]+)/gm)].reduce((s, m) => s + Number(m[1]), 0);
};

function start() {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ['--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', '--redis', REDIS,
      '--user-rate', USER_RATE, '--user-burst', '1000000', '--workers', '1', '--redis-emitter', 'false'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let buf = '';
    child.stderr.on('data', (d) => {
      buf += d;
      const m = buf.match(/websocket=(\S+) control=(\S+)/);
      if (m && !child.addrs) {
        child.addrs = { ws: m[1], control: m[2] };
        resolve(child);
      }
    });
    child.on('exit', () => reject(new Error(`herald exited: ${buf}`)));
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function call(addr, method, path, body) {
  const [host, port] = addr.split(':');
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path, agent, headers: { 'content-type': 'application/json' } }, (res) => {
      let d = '';
      res.on('data', (c) => (d += c));
      res.on('end', () => resolve({ status: res.statusCode, body: d }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
const metric = async (node, name) => {
  const { body } = await call(node.addrs.control, 'GET', '/metrics');
  const line = body.split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.split(' ')[1]) : NaN;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const nodes = [await start(), await start(), await start()];
try {
  for (const n of nodes) {
    for (let i = 0; ; i++) {
      if ((await call(n.addrs.control, 'GET', '/readyz')).status === 200) break;
      if (i > 100) throw new Error('a node did not reach Redis');
      await sleep(50);
    }
  }
  const ws = new WebSocket(`ws://${nodes[0].addrs.ws}/ws`);
  let received = 0;
  ws.on('message', (m) => { if (JSON.parse(m).event === 'notification') received++; });
  await new Promise((r) => ws.on('open', r));
  ws.send(JSON.stringify({ event: 'subscribe', data: 'solo' }));
  await sleep(300);

  const body = JSON.stringify({ type: 'LIKE', message: 'x'.repeat(150), actorId: 'a1' });
  // Warm up the connection and the nodes.
  for (let i = 0; i < 200; i++) await call(nodes[1].addrs.control, 'POST', '/v1/users/solo/notifications', body);
  await sleep(200);

  const before = await Promise.all(nodes.map(async (n) => ({
    bytes: await metric(n, 'herald_redis_push_bytes_received_total'),
    pushes: await metric(n, 'herald_redis_pushes_received_total'),
  })));
  const idle0 = nodes.map((n) => cpuMs(n.pid));
  const r0 = redisCpu();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < PUSHES; i++) {
    const r = await call(nodes[1].addrs.control, 'POST', '/v1/users/solo/notifications', body);
    if (r.status !== 202) throw new Error(`push answered ${r.status}: ${r.body}`);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const busy = nodes.map((n, i) => cpuMs(n.pid) - idle0[i]);
  const r1 = redisCpu();
  // The same length of time idle, for the heartbeat's share.
  const idleStart = nodes.map((n) => cpuMs(n.pid));
  await sleep(seconds * 1000);
  const idle = nodes.map((n, i) => cpuMs(n.pid) - idleStart[i]);
  const after = await Promise.all(nodes.map(async (n) => ({
    bytes: await metric(n, 'herald_redis_push_bytes_received_total'),
    pushes: await metric(n, 'herald_redis_pushes_received_total'),
  })));
  const summary = {
    user_rate: Number(USER_RATE),
    pushes: PUSHES,
    seconds,
    received_by_the_client: received,
    redis_cpu_us_per_push: ((r1 - r0) * 1e6) / PUSHES,
    nodes: nodes.map((n, i) => ({
      node: i,
      holds: i === 0,
      bytes: after[i].bytes - before[i].bytes,
      pushes: after[i].pushes - before[i].pushes,
      cpu_ms: busy[i],
      idle_cpu_ms: idle[i],
    })),
  };
  writeFileSync(OUT, JSON.stringify(summary, null, 2));
  console.log(JSON.stringify(summary, null, 2));
  ws.close();
} finally {
  for (const n of nodes) n.kill('SIGKILL');
  agent.destroy();
}
