// What the tests share: a WebSocket server on 127.0.0.1:0 that plays herald, and a queue of
// values taken in order.

import { WebSocketServer } from 'ws';

import { msgpack } from '../dist/msgpack.js';

// How long a test waits for something that should come before it fails.
export const PATIENCE = 5_000;

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

  get pending() {
    return [...this.#items];
  }
}

// A server in herald's place. `connections` yields each accepted connection as
// `{ ws, url, protocol, messages, send(event, data, extra), close(code, reason), at }`:
// `messages` is a Queue of the client's decoded `{event, data}`, `at` when it was accepted.
// Messages go JSON or MessagePack as the client asked by subprotocol.
export async function fakeHerald(t) {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    handleProtocols: (protocols) => (protocols.has('herald.msgpack') ? 'herald.msgpack' : false),
  });
  await new Promise((resolve) => wss.on('listening', resolve));
  const connections = new Queue('connection');
  wss.on('connection', (ws, req) => {
    const packed = ws.protocol === 'herald.msgpack';
    const messages = new Queue('message from the client');
    ws.on('message', (data, isBinary) => {
      messages.push({ binary: isBinary, ...(packed ? msgpack.decode(data) : JSON.parse(data)) });
    });
    connections.push({
      ws,
      url: req.url,
      protocol: ws.protocol,
      messages,
      at: Date.now(),
      send(event, data, extra = {}) {
        const m = { event, data, ...extra };
        ws.send(packed ? msgpack.encode(m) : JSON.stringify(m));
      },
      close(code, reason) {
        ws.close(code, reason);
      },
    });
  });
  t.after(() => {
    for (const ws of wss.clients) ws.terminate();
    return new Promise((resolve) => wss.close(resolve));
  });
  return { url: `ws://127.0.0.1:${wss.address().port}/ws`, connections };
}

// Every `event` of `client` from now on, by its arguments.
export function record(client, event) {
  const q = new Queue(`'${event}' event`);
  client.on(event, (...args) => q.push(args));
  return q;
}

// A JWT with `claims`, unsigned (the client never verifies one).
export function jwt(claims) {
  const part = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}.c2ln`;
}
