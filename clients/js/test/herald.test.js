// The Herald class against a `ws` server on 127.0.0.1 that plays herald: what it sends on
// connect and reconnect, what it delivers, and what it does after each of herald's close codes.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import WebSocket from 'ws';

import { Herald } from '../dist/index.js';
import { msgpack } from '../dist/msgpack.js';
import { fakeHerald, jwt, Queue, record } from './helpers.js';

// A client of `server`, closed when the test ends.
function client(t, server, options = {}) {
  const c = new Herald(server.url, { WebSocket, ...options });
  t.after(() => c.close());
  return c;
}

// Answers the subscribe `conn` receives next as herald would, and returns that subscribe.
async function answerSubscribe(conn, offset, recovered) {
  const m = await conn.messages.next();
  assert.equal(m.event, 'subscribe', JSON.stringify(m));
  const data = { userIds: m.data.userIds, socketId: 'sock', offset };
  if (recovered !== undefined) data.recovered = recovered;
  conn.send('subscribed', data);
  return m;
}

// Replaces Math.random for the test: backoff delays become their ceilings, or 0.
function fixRandom(t, value) {
  const random = Math.random;
  Math.random = () => value;
  t.after(() => (Math.random = random));
}

test('constructing: without a WebSocket, or msgpack without a codec, is refused', (t) => {
  // Node 18 to 21 have no global WebSocket; Node 22 has one, taken away here for the test.
  const global = Object.getOwnPropertyDescriptor(globalThis, 'WebSocket');
  if (global) {
    delete globalThis.WebSocket;
    t.after(() => Object.defineProperty(globalThis, 'WebSocket', global));
  }
  assert.throws(() => new Herald('ws://127.0.0.1:1/ws'), /no WebSocket here.*options\.WebSocket/);
  assert.throws(
    () => new Herald('ws://127.0.0.1:1/ws', { WebSocket, format: 'msgpack' }),
    /format 'msgpack' needs options\.msgpack/,
  );
});

test('subscribes every user id in one message, delivers, drops repeats by offset', async (t) => {
  const server = await fakeHerald(t);
  const c = client(t, server);
  const states = record(c, 'state');
  const notes = record(c, 'notification');
  const subs = record(c, 'subscribed');
  c.subscribe('u1');
  c.subscribe(42);
  c.subscribe('u1');
  assert.deepEqual(c.userIds, ['u1', '42']);

  const conn = await server.connections.next();
  assert.equal(conn.url, '/ws', 'no token in the URL');
  assert.equal(conn.protocol, '', 'no subprotocol for JSON');
  const sub = await answerSubscribe(conn, 'ab-4');
  assert.deepEqual(sub, { binary: false, event: 'subscribe', data: { userIds: ['u1', '42'] } });
  assert.deepEqual(await subs.next(), [
    { userIds: ['u1', '42'], socketId: 'sock', offset: 'ab-4', recovered: undefined },
  ]);
  assert.deepEqual(await states.next(), ['connecting']);
  assert.deepEqual(await states.next(), ['connected']);
  assert.equal(c.state, 'connected');
  assert.equal(c.lastOffset, 'ab-4');

  conn.send('notification', { n: 4 }, { offset: 'ab-4' }); // The subscribe answer's: seen.
  conn.send('notification', { n: 5 }, { offset: 'ab-5' });
  conn.send('notification', { n: 5 }, { offset: 'ab-5' });
  conn.send('notification', { n: 3 }, { offset: 'ab-3' });
  conn.send('notification', { n: 6 }, { offset: 'ab-6' });
  conn.send('notification', { n: 'no offset' });
  conn.send('notification', { n: 'no offset' });
  conn.send('notification', { n: 10 }, { offset: 'ab-10' });
  assert.deepEqual(await notes.next(), [{ n: 5 }, { offset: 'ab-5' }]);
  assert.deepEqual(await notes.next(), [{ n: 6 }, { offset: 'ab-6' }]);
  assert.deepEqual(await notes.next(), [{ n: 'no offset' }, { offset: undefined }]);
  assert.deepEqual(await notes.next(), [{ n: 'no offset' }, { offset: undefined }]);
  assert.deepEqual(await notes.next(), [{ n: 10 }, { offset: 'ab-10' }]);
  assert.equal(c.lastOffset, 'ab-10');

  // A later subscribe goes alone, without an offset; unsubscribe names the user.
  c.subscribe('u3');
  assert.deepEqual((await answerSubscribe(conn, 'ab-10')).data, { userIds: ['u3'] });
  c.unsubscribe('42');
  assert.deepEqual(await conn.messages.next(), { binary: false, event: 'unsubscribe', data: '42' });
  c.unsubscribe('nobody');
  conn.send('error', { message: 'rate limited' });
  assert.deepEqual(await record(c, 'error').next(), [{ message: 'rate limited' }]);
  assert.deepEqual(conn.messages.pending, [], 'nothing for a user never subscribed');
});

test('reconnects after 4008 and resubscribes with the last offset; recovered or not', async (t) => {
  const server = await fakeHerald(t);
  const c = client(t, server, { minDelay: 1 });
  const notes = record(c, 'notification');
  const subs = record(c, 'subscribed');
  c.subscribe('u1');
  c.subscribe('u2');
  let conn = await server.connections.next();
  await answerSubscribe(conn, 'ab-0');
  conn.send('notification', { n: 1 }, { offset: 'ab-1' });
  conn.send('notification', { n: 2 }, { offset: 'ab-2' });
  await notes.next();
  await notes.next();

  // Slow consumer: reconnect, one subscribe for both users from the last offset; a replay that
  // overlaps what was delivered gives only the new ones.
  conn.close(4008, 'slow consumer: reconnect');
  conn = await server.connections.next();
  assert.equal(conn.url, '/ws?resume=1', 'says it resumes: its broadcasts wait for the subscribe');
  // herald's answer names the log's head; the replay from before it follows.
  let sub = await answerSubscribe(conn, 'ab-4', true);
  assert.deepEqual(sub.data, { userIds: ['u1', 'u2'], offset: 'ab-2' });
  await subs.next();
  assert.equal((await subs.next())[0].recovered, true);
  assert.equal(c.recovered, true);
  assert.equal(c.lastOffset, 'ab-2', 'not the head: the replay is still to come');
  conn.send('notification', { n: 2 }, { offset: 'ab-2' });
  conn.send('notification', { n: 3 }, { offset: 'ab-3' });
  conn.send('notification', { n: 4 }, { offset: 'ab-4' });
  assert.deepEqual(await notes.next(), [{ n: 3 }, { offset: 'ab-3' }]);
  assert.deepEqual(await notes.next(), [{ n: 4 }, { offset: 'ab-4' }]);

  // Not recovered, in a new epoch: the answer's offset is where it starts again.
  conn.close(4008);
  conn = await server.connections.next();
  sub = await answerSubscribe(conn, 'cd-7', false);
  assert.deepEqual(sub.data, { userIds: ['u1', 'u2'], offset: 'ab-4' });
  assert.equal((await subs.next())[0].recovered, false);
  assert.equal(c.recovered, false);
  assert.equal(c.lastOffset, 'cd-7');
  conn.send('notification', { n: 'old' }, { offset: 'cd-7' });
  conn.send('notification', { n: 8 }, { offset: 'cd-8' });
  // A later subscribe's answer (the head, no `recovered`) leaves the last offset alone.
  c.subscribe('u3');
  await answerSubscribe(conn, 'cd-9');
  assert.deepEqual(await notes.next(), [{ n: 8 }, { offset: 'cd-8' }]);
  await subs.next();
  assert.equal(c.lastOffset, 'cd-8');
  conn.send('notification', { n: 9 }, { offset: 'cd-9' });
  assert.deepEqual(await notes.next(), [{ n: 9 }, { offset: 'cd-9' }]);

  // Not recovered in the same epoch (beyond the window): from the answer's offset too.
  conn.close(4008);
  conn = await server.connections.next();
  await answerSubscribe(conn, 'cd-20', false);
  await subs.next();
  conn.send('notification', { n: 'old' }, { offset: 'cd-20' });
  conn.send('notification', { n: 21 }, { offset: 'cd-21' });
  assert.deepEqual(await notes.next(), [{ n: 21 }, { offset: 'cd-21' }]);
  assert.deepEqual(notes.pending, []);
});

test('a token function: auth first, the subscribe right behind it, a new token after 4001 and 4003', async (t) => {
  const server = await fakeHerald(t);
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const tokens = [];
  const c = client(t, server, {
    minDelay: 1,
    token: async () => {
      tokens.push(jwt({ sub: 'u1', exp, n: tokens.length }));
      return tokens.at(-1);
    },
  });
  const errors = record(c, 'error');
  c.subscribe('u1');
  for (const code of [4001, 4003]) {
    const conn = await server.connections.next();
    assert.equal(conn.url, '/ws', 'the token is not in the URL');
    assert.deepEqual(await conn.messages.next(), {
      binary: false,
      event: 'auth',
      data: tokens.at(-1),
    });
    // Sent before any answer to the auth: pipelined.
    assert.equal((await conn.messages.next()).event, 'subscribe');
    conn.send('authenticated', { userId: 'u1', exp });
    conn.send('error', { message: code === 4001 ? 'unauthorized' : 'token expired' });
    conn.close(code, code === 4001 ? 'unauthorized' : 'token expired');
    assert.deepEqual(
      (await errors.next())[0].message,
      code === 4001 ? 'unauthorized' : 'token expired',
    );
    assert.deepEqual(await errors.next(), [
      { message: code === 4001 ? 'unauthorized' : 'token expired', code },
    ]);
  }
  const conn = await server.connections.next();
  assert.deepEqual(await conn.messages.next(), { binary: false, event: 'auth', data: tokens[2] });
  assert.equal(tokens.length, 3, 'one token per connect');
});

for (const code of [4001, 4003]) {
  test(`a static token refused with ${code}: an error, and no reconnect`, async (t) => {
    const server = await fakeHerald(t);
    const c = client(t, server, { token: jwt({ sub: 'u1' }), minDelay: 1 });
    const errors = record(c, 'error');
    const states = record(c, 'state');
    c.subscribe('u1');
    const conn = await server.connections.next();
    assert.equal((await conn.messages.next()).event, 'auth');
    conn.close(code);
    assert.deepEqual(await errors.next(), [
      { message: code === 4001 ? 'unauthorized' : 'token expired', code },
    ]);
    assert.deepEqual(await states.next(), ['connecting']);
    assert.deepEqual(await states.next(), ['disconnected']);
    // A reconnect would come within a few ms (minDelay 1): give it ten times longer.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(server.connections.pending, [], 'no reconnect');
    assert.equal(c.state, 'disconnected');
  });
}

test('1012 (restart): the first attempt goes at once, whatever the backoff', async (t) => {
  fixRandom(t, 1 - Number.EPSILON);
  const server = await fakeHerald(t);
  const c = client(t, server, { minDelay: 60_000, maxDelay: 60_000 });
  c.subscribe('u1');
  let conn = await server.connections.next();
  await answerSubscribe(conn, 'ab-0');
  conn.close(1012, 'server restart');
  conn = await server.connections.next();
  await answerSubscribe(conn, 'ab-0', true);
  // Any other code waits the backoff, here about a minute.
  conn.close(4008);
  await assert.rejects(server.connections.next(500), /no connection/);
});

test('1008 (too many messages) waits policyDelay on top of the backoff; 4008 does not', async (t) => {
  fixRandom(t, 0);
  const server = await fakeHerald(t);
  const c = client(t, server, { minDelay: 60_000, policyDelay: 400 });
  c.subscribe('u1');
  let conn = await server.connections.next();
  await answerSubscribe(conn, 'ab-0');
  let closed = Date.now();
  conn.close(1008, 'too many messages');
  conn = await server.connections.next();
  assert.ok(conn.at - closed >= 390, `waited ${conn.at - closed} ms of the 400`);
  await answerSubscribe(conn, 'ab-0');
  conn.close(4008);
  // With random() = 0 the backoff is 0: only the policy delay would make it wait.
  conn = await server.connections.next(300);
});

test('the ceiling grows while attempts fail and is reset once subscribed', async (t) => {
  fixRandom(t, 1 - Number.EPSILON);
  const server = await fakeHerald(t);
  const c = client(t, server, { minDelay: 100, factor: 2, maxDelay: 250 });
  c.subscribe('u1');
  let conn = await server.connections.next();
  // Closed before it subscribed: attempts 0, 1, 2 wait about 100, 200, 250 (the maximum).
  const waits = [];
  for (let i = 0; i < 3; i++) {
    const closed = Date.now();
    conn.close(4008);
    conn = await server.connections.next();
    waits.push(conn.at - closed);
  }
  assert.ok(waits[0] >= 95 && waits[1] >= 195 && waits[2] >= 245, `waits ${waits}`);
  await answerSubscribe(conn, 'ab-0');
  await record(c, 'subscribed').next();
  const closed = Date.now();
  conn.close(4008);
  conn = await server.connections.next();
  assert.ok(conn.at - closed >= 95, `after a reset, about 100 again: ${conn.at - closed}`);
});

test('the browser going online reconnects at once', async (t) => {
  // A stand-in for the window's events: Node has none.
  const target = new EventTarget();
  globalThis.addEventListener = target.addEventListener.bind(target);
  globalThis.removeEventListener = target.removeEventListener.bind(target);
  t.after(() => {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
  });
  fixRandom(t, 1 - Number.EPSILON);
  const server = await fakeHerald(t);
  const c = client(t, server, { minDelay: 60_000, maxDelay: 60_000 });
  c.subscribe('u1');
  let conn = await server.connections.next();
  await answerSubscribe(conn, 'ab-0');
  conn.close(4008);
  await assert.rejects(server.connections.next(300), /no connection/);
  target.dispatchEvent(new Event('online'));
  conn = await server.connections.next();
  assert.deepEqual((await conn.messages.next()).data, { userIds: ['u1'], offset: 'ab-0' });
});

test('the token is refreshed before its exp on the same socket, and again after', async (t) => {
  const server = await fakeHerald(t);
  const made = [];
  // Tokens of 2 s: the refresh goes halfway (refreshBefore, 60 s, is longer than that).
  const token = () => {
    made.push(jwt({ sub: 'u1', exp: Math.floor(Date.now() / 1000) + 2, n: made.length }));
    return made.at(-1);
  };
  const c = client(t, server, { token });
  c.subscribe('u1');
  const conn = await server.connections.next();
  for (let i = 0; i < 3; i++) {
    const auth = await conn.messages.next();
    assert.deepEqual(auth, { binary: false, event: 'auth', data: made[i] });
    if (i === 0) assert.equal((await conn.messages.next()).event, 'subscribe');
    const exp = JSON.parse(Buffer.from(made[i].split('.')[1], 'base64url')).exp;
    // herald always names the exp; without it, the token's own is used.
    conn.send('authenticated', i === 1 ? { userId: 'u1' } : { userId: 'u1', exp });
  }
  assert.equal(made.length, 3);
  assert.equal(server.connections.pending.length, 0, 'one socket throughout');
});

test('msgpack: subprotocol herald.msgpack, binary frames both ways', async (t) => {
  const server = await fakeHerald(t);
  const c = client(t, server, { format: 'msgpack', msgpack, token: 'tok' });
  const notes = record(c, 'notification');
  c.subscribe('u1');
  const conn = await server.connections.next();
  assert.equal(conn.protocol, 'herald.msgpack');
  assert.deepEqual(await conn.messages.next(), { binary: true, event: 'auth', data: 'tok' });
  await answerSubscribe(conn, 'ab-0');
  conn.send('notification', { message: 'hé', n: 2 ** 40, list: [1, -1, 1.5] }, { offset: 'ab-1' });
  assert.deepEqual(await notes.next(), [
    { message: 'hé', n: 2 ** 40, list: [1, -1, 1.5] },
    { offset: 'ab-1' },
  ]);
});

test('close(): code 1000, state disconnected, no reconnect; connect() opens again', async (t) => {
  const server = await fakeHerald(t);
  const c = client(t, server, { minDelay: 1 });
  c.subscribe('u1');
  let conn = await server.connections.next();
  await answerSubscribe(conn, 'ab-0');
  await record(c, 'subscribed').next();
  const closed = new Promise((resolve) => conn.ws.on('close', (code) => resolve(code)));
  c.close();
  assert.equal(c.state, 'disconnected');
  assert.equal(await closed, 1000);
  await assert.rejects(server.connections.next(300), /no connection/);
  c.connect();
  conn = await server.connections.next();
  assert.deepEqual((await conn.messages.next()).data, { userIds: ['u1'], offset: 'ab-0' });
});

test('a token function that throws: an error, then the next attempt', async (t) => {
  const server = await fakeHerald(t);
  let calls = 0;
  const c = client(t, server, {
    minDelay: 1,
    token: () => {
      if (++calls === 1) throw new Error('auth server down');
      return 'tok';
    },
  });
  const errors = new Queue('error');
  c.on('error', (e) => errors.push(e));
  const conn = await server.connections.next();
  assert.deepEqual(await errors.next(), { message: 'token: auth server down' });
  assert.deepEqual(await conn.messages.next(), { binary: false, event: 'auth', data: 'tok' });
  assert.equal(calls, 2);
});

test('on() returns an off function; off() removes a handler', async (t) => {
  const server = await fakeHerald(t);
  const c = client(t, server);
  const got = [];
  const off = c.on('notification', (d) => got.push(['a', d.n]));
  const b = (d) => got.push(['b', d.n]);
  c.on('notification', b);
  const last = record(c, 'notification');
  c.subscribe('u1');
  const conn = await server.connections.next();
  await answerSubscribe(conn, 'ab-0');
  conn.send('notification', { n: 1 }, { offset: 'ab-1' });
  await last.next();
  off();
  c.off('notification', b);
  conn.send('notification', { n: 2 }, { offset: 'ab-2' });
  await last.next();
  assert.deepEqual(got, [
    ['a', 1],
    ['b', 1],
  ]);
});
