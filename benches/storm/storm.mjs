// Reconnect storm: N raw clients, each subscribed to its own user, while pushes flow (unicast to
// random users and a broadcast a second); then every client's TCP connection is killed at once and
// each comes back within SPREAD seconds, resubscribing with the last offset it saw. Reports the
// time until every client was answered `recovered: true` and had caught up, what herald's
// process spent in CPU meanwhile and its peak RSS, and checks that every client ends holding
// exactly the pushes addressed to it, in order.
//
//   node storm.mjs --url ws://127.0.0.1:5000/ws --control http://127.0.0.1:5001 --pid <herald pid>
//       [--clients 10000] [--rate 1000] [--spread 5]

import http from 'node:http';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const URL_WS = arg('url', 'ws://127.0.0.1:5000/ws');
const CONTROL = new URL(arg('control', 'http://127.0.0.1:5001'));
const PID = arg('pid');
const N = Number(arg('clients', 10000));
const RATE = Number(arg('rate', 1000));
const SPREAD = Number(arg('spread', 5));

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
function post(path, body) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request(
      { host: CONTROL.hostname, port: CONTROL.port, path, method: 'POST', agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } },
      (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
    req.on('error', reject);
    req.end(data);
  });
}

function cpuTicks() {
  const f = readFileSync(`/proc/${PID}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime, in clock ticks (100/s)
}
function peakRss() {
  const m = readFileSync(`/proc/${PID}/status`, 'utf8').match(/VmHWM:\s+(\d+) kB/);
  return Number(m[1]) * 1024;
}

// Per user: what was pushed to it (sequence numbers, broadcasts included) and what it got.
const sent = Array.from({ length: N }, () => []);
const clients = Array.from({ length: N }, (_, i) => ({ i, got: [], offset: null, ws: null, recoveredAt: 0 }));
let broadcasts = 0;
let seq = 0;

function open(c, resume) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(URL_WS, { perMessageDeflate: false });
    c.ws = ws;
    ws.on('error', reject);
    ws.on('open', () => {
      const data = resume ? { userId: `s-${c.i}`, offset: c.offset } : `s-${c.i}`;
      ws.send(JSON.stringify({ event: 'subscribe', data }));
    });
    ws.on('message', (raw) => {
      const m = JSON.parse(raw);
      if (m.event === 'subscribed') {
        if (resume && m.data.recovered !== true) reject(new Error(`client ${c.i}: ${raw}`));
        if (c.offset === null) c.offset = m.data.offset;
        c.recoveredAt = performance.now();
        resolve();
      } else if (m.event === 'notification') {
        c.got.push(m.data.seq);
        c.offset = m.offset;
      }
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let pushing = true;
async function pusher() {
  let last = performance.now();
  while (pushing) {
    const n = ++seq;
    if (n % RATE === 0) {
      broadcasts++;
      for (const s of sent) s.push(n);
      await post('/v1/broadcast', { notification: { type: 'ALL', seq: n } });
    } else {
      const u = Math.floor(Math.random() * N);
      sent[u].push(n);
      await post(`/v1/users/s-${u}/notifications`, { type: 'TEST', seq: n });
    }
    const due = last + 1000 / RATE;
    last = due;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
  }
}

const t0 = performance.now();
for (let i = 0; i < N; i += 500) {
  await Promise.all(clients.slice(i, i + 500).map((c) => open(c, false)));
}
console.log(`${N} clients subscribed in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
const pushes = pusher();
await sleep(3000);

const cpu0 = cpuTicks();
const drop = performance.now();
for (const c of clients) c.ws._socket.destroy();
await Promise.all(clients.map(async (c) => {
  await sleep(Math.random() * SPREAD * 1000);
  await open(c, true);
}));
const allBack = performance.now();
await sleep(3000);
pushing = false;
await pushes;
await sleep(2000);
const cpu1 = cpuTicks();

let lost = 0, dup = 0, disorder = 0;
for (const c of clients) {
  const want = sent[c.i];
  const got = c.got;
  const seen = new Set();
  for (let k = 0; k < got.length; k++) {
    if (seen.has(got[k])) dup++;
    seen.add(got[k]);
    if (k > 0 && got[k] < got[k - 1]) disorder++;
  }
  for (const s of want) if (!seen.has(s)) lost++;
}
const lastRecovered = Math.max(...clients.map((c) => c.recoveredAt)) - drop;
console.log(JSON.stringify({
  clients: N, rate: RATE, spread_s: SPREAD, pushes: seq, broadcasts,
  all_recovered_ms: Math.round(lastRecovered),
  all_back_ms: Math.round(allBack - drop),
  herald_cpu_s: (cpu1 - cpu0) / 100,
  herald_peak_rss_mib: +(peakRss() / 1048576).toFixed(1),
  lost, duplicated: dup, out_of_order: disorder,
}));
for (const c of clients) c.ws.close();
process.exit(lost || dup || disorder ? 2 : 0);
