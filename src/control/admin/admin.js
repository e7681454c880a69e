// herald's admin page: polls the control API as any caller does, with the session cookie and
// the X-Herald-Admin header that makes it count. No library: charts are drawn on <canvas>.
'use strict';

const HEADERS = { 'X-Herald-Admin': '1' };
const POLL_MS = 1000;
// Points kept per series: two minutes at one a second.
const KEEP = 120;
const COLORS = ['#2f6fde', '#e0732c', '#2a9d6f', '#b04fc9', '#c9a227', '#d1495b', '#4fa3c9', '#7a7f8c'];
const PROTOCOLS = [
  ['raw_json', 'raw JSON'],
  ['raw_msgpack', 'raw MessagePack'],
  ['socketio_websocket', 'Socket.IO WebSocket'],
  ['socketio_polling', 'Socket.IO polling'],
];

function api(path, init = {}) {
  return fetch(path, {
    ...init,
    headers: { ...HEADERS, ...(init.headers || {}) },
    credentials: 'same-origin',
    cache: 'no-store',
  });
}

// ---- Login -------------------------------------------------------------------------------

function loginPage() {
  const form = document.getElementById('login');
  const error = document.getElementById('login-error');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const body = new URLSearchParams({ key: form.elements.key.value });
    let res;
    try {
      res = await fetch('/admin/login', { method: 'POST', body, credentials: 'same-origin' });
    } catch (e) {
      error.textContent = 'herald did not answer';
      return;
    }
    // A right key is answered 303 to /admin, which fetch follows with the cookie set.
    if (res.ok) {
      location.assign('/admin');
      return;
    }
    const answer = await res.json().catch(() => ({}));
    error.textContent = res.status === 429
      ? `Too many wrong keys from this address: retry in ${answer.retryAfter || '?'} s`
      : res.status === 401 ? 'Wrong key' : `herald answered ${res.status}`;
    form.elements.key.select();
  });
}

// ---- Prometheus text ---------------------------------------------------------------------

// Parses the text exposition format into name -> [{labels, value}].
function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) {
      for (const l of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
        labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
      }
    }
    if (!out.has(m[1])) out.set(m[1], []);
    out.get(m[1]).push({ labels, value: Number(m[3]) });
  }
  return out;
}

function sum(metrics, name, match = {}) {
  let total = 0;
  for (const s of metrics.get(name) || []) {
    if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) total += s.value;
  }
  return total;
}

// ---- Charts ------------------------------------------------------------------------------

class Chart {
  constructor(id, format = formatCount) {
    const fig = document.getElementById(id);
    this.canvas = fig.querySelector('canvas');
    this.legend = fig.querySelector('.legend');
    this.format = format;
    // key -> {label, color, points, value element}
    this.series = new Map();
  }

  // Adds `value` to series `key`; a series not `plotted` is shown in the legend only (a total
  // beside its rate).
  set(key, label, value, plotted = true) {
    let s = this.series.get(key);
    if (!s) {
      const color = COLORS[this.series.size % COLORS.length];
      const li = document.createElement('li');
      li.style.setProperty('--swatch', color);
      li.append(label);
      const v = document.createElement('span');
      v.className = 'value';
      v.dataset.key = `${this.canvas.parentElement.id.slice(6)}.${key}`;
      li.append(v);
      this.legend.append(li);
      if (!plotted) li.className = 'unplotted';
      s = { color, points: [], el: v, plotted };
      this.series.set(key, s);
    }
    if (plotted) s.points.push(value);
    if (s.points.length > KEEP) s.points.shift();
    s.el.textContent = this.format(value);
    s.el.dataset.value = String(value);
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth;
    const h = c.clientHeight;
    if (c.width !== Math.round(w * dpr)) c.width = Math.round(w * dpr);
    if (c.height !== Math.round(h * dpr)) c.height = Math.round(h * dpr);
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    let max = 0;
    for (const s of this.series.values()) for (const p of s.points) max = Math.max(max, p);
    max = niceCeiling(max);
    const left = 44;
    const top = 6;
    const bottom = h - 14;
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#687085';
    g.strokeStyle = '#dde1e8';
    g.lineWidth = 1;
    for (const f of [0, 0.5, 1]) {
      const y = Math.round(bottom - f * (bottom - top)) + 0.5;
      g.beginPath();
      g.moveTo(left, y);
      g.lineTo(w, y);
      g.stroke();
      g.textAlign = 'right';
      g.textBaseline = 'middle';
      g.fillText(this.format(max * f), left - 6, y);
    }
    g.textAlign = 'left';
    g.textBaseline = 'alphabetic';
    g.fillText(`${KEEP} s`, left, h - 1);
    const step = (w - left) / (KEEP - 1);
    for (const s of this.series.values()) {
      const start = left + (KEEP - s.points.length) * step;
      g.strokeStyle = s.color;
      g.lineWidth = 1.6;
      g.beginPath();
      s.points.forEach((p, i) => {
        const x = start + i * step;
        const y = bottom - (max ? p / max : 0) * (bottom - top);
        if (i === 0) g.moveTo(x, y);
        else g.lineTo(x, y);
      });
      g.stroke();
    }
  }
}

function niceCeiling(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function formatCount(v) {
  if (!Number.isFinite(v)) return '–';
  if (Math.abs(v) >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (Math.abs(v) >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function formatBytes(v) {
  if (!Number.isFinite(v)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

// ---- The dashboard -----------------------------------------------------------------------

function adminPage() {
  const status = document.getElementById('status');
  const charts = {
    sockets: new Chart('chart-sockets'),
    workers: new Chart('chart-workers'),
    users: new Chart('chart-users'),
    pushes: new Chart('chart-pushes'),
    deliveries: new Chart('chart-deliveries'),
    queued: new Chart('chart-queued', formatBytes),
    slow: new Chart('chart-slow'),
    limited: new Chart('chart-limited'),
  };
  let last = null;

  function update(m, at) {
    for (const [p, label] of PROTOCOLS) {
      charts.sockets.set(p, label, sum(m, 'herald_sockets', { protocol: p }));
    }
    const workers = (m.get('herald_worker_connections') || [])
      .slice()
      .sort((a, b) => Number(a.labels.worker) - Number(b.labels.worker));
    for (const s of workers) charts.workers.set(s.labels.worker, `worker ${s.labels.worker}`, s.value);
    charts.users.set('total', 'users', sum(m, 'herald_subscribed_users'));
    const pushes = sum(m, 'herald_pushes_total');
    const deliveries = sum(m, 'herald_deliveries_total');
    const secs = last ? Math.max((at - last.at) / 1000, 0.001) : 1;
    const rate = (now, then) => (last ? Math.max(now - then, 0) / secs : 0);
    charts.pushes.set('rate', 'per second', rate(pushes, last && last.pushes));
    charts.pushes.set('total', 'total', pushes, false);
    charts.deliveries.set('rate', 'per second', rate(deliveries, last && last.deliveries));
    charts.deliveries.set('total', 'total', deliveries, false);
    charts.queued.set('total', 'queued', sum(m, 'herald_worker_queued_bytes'));
    charts.slow.set('total', 'closed (4008)', sum(m, 'herald_slow_consumers_total'));
    charts.limited.set('user', 'pushes (user)', sum(m, 'herald_rate_limited_total', { limit: 'user' }));
    charts.limited.set('client', 'messages (client)', sum(m, 'herald_rate_limited_total', { limit: 'client' }));
    last = { at, pushes, deliveries };
    for (const c of Object.values(charts)) c.draw();
  }

  async function poll() {
    try {
      const res = await api('/metrics');
      if (res.status === 401) {
        status.textContent = 'session ended: reload to log in again';
        status.classList.add('bad');
        return;
      }
      if (!res.ok) throw new Error(`GET /metrics: ${res.status}`);
      const text = await res.text();
      update(parseMetrics(text), performance.now());
      status.textContent = `updated ${new Date().toLocaleTimeString()}`;
      status.classList.remove('bad');
    } catch (e) {
      status.textContent = String(e.message || e);
      status.classList.add('bad');
    }
    setTimeout(poll, POLL_MS);
  }

  document.getElementById('lookup').addEventListener('submit', (ev) => {
    ev.preventDefault();
    lookUp(document.getElementById('lookup-user').value);
  });
  document.getElementById('push').addEventListener('submit', (ev) => {
    ev.preventDefault();
    push(ev.target);
  });
  document.getElementById('logout').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    await api('/admin/logout', { method: 'POST' }).catch(() => {});
    location.assign('/admin');
  });
  loadConfig();
  poll();
}

async function lookUp(user) {
  const summary = document.getElementById('lookup-summary');
  const table = document.getElementById('devices');
  const tbody = table.querySelector('tbody');
  tbody.replaceChildren();
  table.hidden = true;
  const res = await api(`/v1/users/${encodeURIComponent(user)}`);
  const answer = await res.json().catch(() => ({}));
  if (!res.ok) {
    summary.textContent = `${res.status}: ${answer.error || 'no answer'}`;
    return;
  }
  const devices = answer.devices || [];
  summary.textContent = answer.online
    ? `${answer.userId}: online, ${answer.sockets} socket${answer.sockets === 1 ? '' : 's'}` +
      (answer.moreDevices ? ` (the first ${devices.length} listed)` : '')
    : `${answer.userId}: offline`;
  for (const d of devices) {
    const tr = document.createElement('tr');
    for (const [v, cls] of [
      [d.socketId, 'mono'],
      [d.protocol, ''],
      [d.address, 'mono'],
      [d.worker, ''],
      [d.subscribedAt, 'mono'],
    ]) {
      const td = document.createElement('td');
      td.textContent = String(v);
      if (cls) td.className = cls;
      tr.append(td);
    }
    tbody.append(tr);
  }
  table.hidden = devices.length === 0;
}

async function push(form) {
  const out = document.getElementById('push-answer');
  const target = form.elements.target.value;
  const user = form.elements.user.value;
  let notification;
  try {
    notification = JSON.parse(form.elements.body.value);
  } catch (e) {
    out.textContent = `not JSON: ${e.message}`;
    return;
  }
  const [path, body] = target === 'all'
    ? ['/v1/broadcast', { notification }]
    : [`/v1/users/${encodeURIComponent(user)}/notifications`, notification];
  out.textContent = '…';
  const res = await api(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  out.textContent = `${res.status} ${await res.text()}`;
  out.dataset.status = String(res.status);
}

async function loadConfig() {
  const res = await api('/admin/config');
  if (!res.ok) return;
  const config = await res.json();
  document.getElementById('logout').hidden = !config.apiKey;
  const tbody = document.querySelector('#config tbody');
  tbody.replaceChildren();
  for (const f of config.flags) {
    const tr = document.createElement('tr');
    tr.dataset.flag = f.flag;
    const cells = [
      [f.flag, 'mono'],
      [f.value === null ? '' : f.value, f.secret ? 'mono secret' : 'mono'],
      [f.source, ''],
      [f.env || '', 'mono'],
    ];
    for (const [v, cls] of cells) {
      const td = document.createElement('td');
      td.textContent = v;
      if (cls) td.className = cls;
      tr.append(td);
    }
    tbody.append(tr);
  }
}

if (document.body.dataset.page === 'login') loginPage();
else adminPage();
