// herald's cluster mode (`--redis`), with real components: three herald nodes on a redis-server of
// the test's own, socket.io-client (websocket and polling) and `ws` clients of one user spread over
// the nodes, the real `@socket.io/redis-emitter` publishing through node-redis, a node killed with
// SIGKILL, and Redis itself killed and restarted.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Emitter } from '@socket.io/redis-emitter';
import { createClient } from 'redis';

import {
  assertNotification,
  eventually,
  metrics,
  once,
  parseOffset,
  push,
  Queue,
  recordRaw,
  scope,
  subscribeRaw,
  TEST_TIMEOUT,
  user,
  withoutOffset,
} from './harness.js';

// A user's presence without the client addresses of the asked node's own sockets (all this
// file's clients are 127.0.0.1; which node lists them depends on where each connected): what
// these tests check is the cluster's counts.
function withoutAddresses({ addresses, ...rest }) {
  return rest;
}

const limit = { timeout: TEST_TIMEOUT };

// Every node: a dead node stops counting within about a second; no per-user push limit, since
// the tests push quickly.
const NODE_ARGS = ['--redis-node-ttl', '1s', '--user-rate', '0', '--workers', '2'];

// `GET /readyz`: 200 once the node reached Redis, 503 before and while Redis is away.
async function ready(node) {
  try {
    const res = await fetch(`${node.control}/readyz`);
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

// A redis-server of the test's own and `count` herald nodes on it, each ready.
async function cluster(s, count = 3) {
  const redis = await s.redis();
  const nodes = await Promise.all(
    Array.from({ length: count }, () => s.herald({ args: ['--redis', redis.url, ...NODE_ARGS] })),
  );
  await Promise.all(
    nodes.map((node, i) => eventually(`node ${i} reached Redis (/readyz 200)`, () => ready(node))),
  );
  return { redis, nodes };
}

// POSTs `body` to the control API's `path`; asserts 202 and returns the answer.
async function post(control, path, body) {
  const res = await fetch(`${control}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.equal(res.status, 202, `POST ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

// Asserts that `offsets` are of one epoch and strictly increasing: the order of the one log. (In a
// cluster an offset's number packs a stream id, beyond 2^53: compared as a BigInt.)
function assertIncreasing(offsets, what) {
  const parsed = offsets.map((offset) => {
    const { epoch } = parseOffset(offset);
    return { epoch, n: BigInt(offset.slice(epoch.length + 1)) };
  });
  assert.equal(new Set(parsed.map((o) => o.epoch)).size, 1, `${what}: one epoch: ${offsets}`);
  for (let i = 1; i < parsed.length; i++) {
    assert.ok(parsed[i].n > parsed[i - 1].n, `${what}: offsets increase: ${offsets}`);
  }
}

// A user's device: a socket.io-client socket on `node` that subscribes to `userId` on every
// `connect` that did not recover its session, as a front end does. Every event but `subscribed`
// lands in `inbox` as `{ event, data, offset }` when it came with one argument and the offset
// last, as `{ event, args }` otherwise. Resolves once subscribed.
async function sioDevice(s, node, userId, name, opts = {}) {
  const socket = s.io(node.wsUrl, opts);
  const device = {
    name,
    socket,
    inbox: new Queue(`message to ${name}`),
    subscribed: new Queue(`'subscribed' to ${name}`),
    connects: new Queue(`'connect' of ${name}`),
    disconnects: new Queue(`'disconnect' of ${name}`),
  };
  socket.onAny((event, ...args) => {
    const m = args.length === 2 ? { event, data: args[0], offset: args[1] } : { event, args };
    (event === 'subscribed' ? device.subscribed : device.inbox).push(m);
  });
  socket.on('connect', () => {
    device.connects.push({ id: socket.id, recovered: socket.recovered });
    if (!socket.recovered) socket.emit('subscribe', userId);
  });
  socket.on('disconnect', (reason) => device.disconnects.push(reason));
  await device.connects.next();
  await assertSubscribed(device, userId);
  return device;
}

// The next `subscribed` answer of a Socket.IO device: to `userId`, for its current socket id,
// its offset both in its data and as its last argument.
async function assertSubscribed(device, userId) {
  const answer = await device.subscribed.next();
  const { offset } = answer;
  parseOffset(offset, `the offset of ${JSON.stringify(answer)}`);
  assert.deepEqual(
    answer,
    { event: 'subscribed', data: { userId, socketId: device.socket.id, offset }, offset },
    device.name,
  );
}

// A user's device: a raw WebSocket on `node`'s `/ws`, subscribed to `userId`; every message after
// the `subscribed` answer lands in `inbox`.
async function rawDevice(s, node, userId, name) {
  const ws = await s.ws(node.wsUrl);
  // A connection reset by a killed node is seen as its close.
  ws.on('error', () => {});
  const inbox = recordRaw(ws);
  inbox.what = `message to ${name}`;
  await subscribeRaw(ws, inbox, userId);
  return { name, ws, inbox };
}

// Subscribes a new raw WebSocket on `node` to `userId` with `offset`, the last one its client
// saw; returns the device and the `subscribed` answer's data.
async function resubscribeRaw(s, node, userId, offset, name) {
  const ws = await s.ws(node.wsUrl);
  const inbox = recordRaw(ws);
  inbox.what = `message to ${name}`;
  ws.send(JSON.stringify({ event: 'subscribe', data: { userId, offset } }));
  const answer = await inbox.next();
  assert.deepEqual(Object.keys(answer).sort(), ['data', 'event'], JSON.stringify(answer));
  assert.equal(answer.event, 'subscribed', JSON.stringify(answer));
  return { device: { name, ws, inbox }, answer: answer.data };
}

// Asserts that `m`, taken from a device's inbox, is `want`: its `event` (`notification` unless
// said), its `data`, and its `offset` when given. A `notification` object without a `timestamp`
// gets one from herald.
function assertMessage(m, want, who) {
  const what = `${who}: ${JSON.stringify(m)}, expected ${JSON.stringify(want)}`;
  assert.deepEqual(Object.keys(m ?? {}).sort(), ['data', 'event', 'offset'], what);
  assert.equal(m.event, want.event ?? 'notification', what);
  const stamped =
    m.event === 'notification' &&
    want.data !== null &&
    typeof want.data === 'object' &&
    !Array.isArray(want.data) &&
    !Object.hasOwn(want.data, 'timestamp');
  if (stamped) assertNotification(m.data, want.data);
  else assert.deepEqual(m.data, want.data, what);
  parseOffset(m.offset, `the offset of ${what}`);
  if (want.offset !== undefined) assert.equal(m.offset, want.offset, `the push's offset: ${what}`);
}

// Takes exactly `wants.length` messages from each device and checks them in order. The last one
// expected being pushed last, anything lost, repeated, extra or out of order fails. Every device
// gets the same offsets, in increasing order; returns them.
async function receiveAll(devices, wants) {
  let offsets;
  for (const device of devices) {
    const got = [];
    for (const want of wants) {
      const m = await device.inbox.next();
      assertMessage(m, want, `${device.name}, message ${got.length + 1} of ${wants.length}`);
      got.push(m.offset);
    }
    if (offsets) assert.deepEqual(got, offsets, `${device.name}: the offsets the others got`);
    offsets = got;
  }
  assertIncreasing(offsets, 'what the devices got');
  return offsets;
}

// A node-redis (v4) client on the test's Redis, closed when the test ends.
async function redisClient(s, redis) {
  const client = createClient({ url: redis.url });
  // Redis killed under it: node-redis reconnects by itself.
  client.on('error', () => {});
  await client.connect();
  s.defer(() => client.disconnect().catch(() => {}));
  return client;
}

// Pub/sub drops what is published while no one listens: waits until a node (the lead) has
// subscribed to the emitter's channels (`socket.io#/#*`).
async function emitterRead(client) {
  await eventually("a node reading the emitter's channels (PUBSUB NUMPAT)", async () => {
    return Number(await client.sendCommand(['PUBSUB', 'NUMPAT'])) >= 1;
  });
}

// `herald_redis_emitted_total` and `herald_redis_emitted_refused_total` of each node.
function emittedCounts(nodes) {
  return Promise.all(
    nodes.map(async (node) => {
      const m = await metrics(node.control);
      return {
        emitted: m.herald_redis_emitted_total,
        refused: m.herald_redis_emitted_refused_total,
      };
    }),
  );
}

test('devices of one user on 3 nodes: pushes on any node reach each once', limit, async (t) => {
  const s = scope(t);
  const { nodes } = await cluster(s);
  const [n0, n1, n2] = nodes;

  // Ann's devices in every protocol and transport, spread over the three nodes; Bob's on two.
  const ann = [
    await sioDevice(s, n0, 'ann', 'ann/socket.io websocket on node 0', {
      transports: ['websocket'],
    }),
    await rawDevice(s, n0, 'ann', 'ann/ws on node 0'),
    await sioDevice(s, n1, 'ann', 'ann/socket.io polling on node 1', {
      transports: ['polling'],
      upgrade: false,
    }),
    await rawDevice(s, n1, 'ann', 'ann/ws on node 1'),
    // Polling first, then the upgrade to websocket.
    await sioDevice(s, n2, 'ann', 'ann/socket.io default transports on node 2'),
    await rawDevice(s, n2, 'ann', 'ann/ws on node 2'),
  ];
  const bob = [
    await rawDevice(s, n2, 'bob', 'bob/ws on node 2'),
    await sioDevice(s, n0, 'bob', 'bob/socket.io websocket on node 0', {
      transports: ['websocket'],
    }),
  ];

  // Presence is counted over the cluster, whichever node is asked.
  for (const [i, node] of nodes.entries()) {
    const u = await eventually(`node ${i} counting ann's 6 sockets`, async () => {
      const v = await user(node.control, 'ann');
      return v.sockets === 6 ? v : false;
    });
    assert.deepEqual(withoutAddresses(u), { userId: 'ann', online: true, sockets: 6, nodes: 3, cluster: 'ok' });
  }
  assert.deepEqual(withoutAddresses(await user(n1.control, 'bob')), {
    userId: 'bob',
    online: true,
    sockets: 2,
    nodes: 2,
    cluster: 'ok',
  });

  // A push on each node's control API, routed to the 3 nodes holding ann.
  const wantAnn = [];
  const wantBob = [];
  for (const [i, node] of nodes.entries()) {
    const data = { type: 'LIKE', message: `pushed on node ${i}` };
    const answer = await push(node.control, 'ann', data);
    assert.deepEqual(withoutOffset(answer), { nodes: 3, cluster: 'ok' }, `push on node ${i}`);
    wantAnn.push({ data, offset: answer.offset });
  }
  // One to several users (one with no socket anywhere), and a broadcast.
  const many = { type: 'MENTION', message: 'to ann, bob and nobody' };
  const manyAnswer = await post(n1.control, '/v1/notifications', {
    userIds: ['ann', 'bob', 'nobody'],
    notification: many,
  });
  assert.deepEqual(withoutOffset(manyAnswer), { nodes: 3, cluster: 'ok', rateLimited: 0 });
  wantAnn.push({ data: many, offset: manyAnswer.offset });
  wantBob.push({ data: many, offset: manyAnswer.offset });
  const everyone = { type: 'SYSTEM', message: 'to everyone' };
  const broadcast = await post(n0.control, '/v1/broadcast', { notification: everyone });
  assert.deepEqual(withoutOffset(broadcast), { nodes: 3, cluster: 'ok', rateLimited: 0 });
  wantAnn.push({ data: everyone, offset: broadcast.offset });
  wantBob.push({ data: everyone, offset: broadcast.offset });
  // The end marker: nothing may come between it and what was expected.
  const sentinel = { message: 'sentinel' };
  const last = await post(n2.control, '/v1/notifications', {
    userIds: ['ann', 'bob'],
    notification: sentinel,
  });
  wantAnn.push({ data: sentinel, offset: last.offset });
  wantBob.push({ data: sentinel, offset: last.offset });

  assertIncreasing(
    wantAnn.map((w) => w.offset),
    'the pushes, in the order they were answered',
  );
  await receiveAll(ann, wantAnn);
  await receiveAll(bob, wantBob);

  assert.equal(ann[0].socket.io.engine.transport.name, 'websocket');
  assert.equal(ann[2].socket.io.engine.transport.name, 'polling');
  assert.equal(ann[4].socket.io.engine.transport.name, 'websocket', 'upgraded from polling');
});

test('@socket.io/redis-emitter: user_<id> rooms are pushes, no room everyone', limit, async (t) => {
  const s = scope(t);
  const { redis, nodes } = await cluster(s);
  const [n0, n1, n2] = nodes;
  const client = await redisClient(s, redis);
  const emitter = new Emitter(client);
  await emitterRead(client);

  const u123 = [
    await sioDevice(s, n0, '123', '123/socket.io websocket on node 0', {
      transports: ['websocket'],
    }),
    await rawDevice(s, n1, '123', '123/ws on node 1'),
    await sioDevice(s, n2, '123', '123/socket.io polling on node 2', {
      transports: ['polling'],
      upgrade: false,
    }),
  ];
  const u456 = [
    await rawDevice(s, n0, '456', '456/ws on node 0'),
    await sioDevice(s, n2, '456', '456/socket.io default transports on node 2'),
  ];
  await eventually('every device counted', async () => {
    const [a, b] = await Promise.all([user(n1.control, '123'), user(n1.control, '456')]);
    return a.sockets === 3 && b.sockets === 2;
  });

  // What a Socket.IO backend writes.
  const like = { type: 'LIKE', message: 'Someone liked your post', data: { postId: 'p1' } };
  emitter.to('user_123').emit('notification', like);
  const stamped = { message: 'with its own timestamp', timestamp: '2024-01-01T00:00:00.000Z' };
  emitter.to('user_123').emit('notification', stamped);
  const announcement = { text: 'maintenance at 2am' };
  emitter.emit('announcement', announcement);
  const both = { type: 'MENTION', message: 'to 123 and 456' };
  emitter.to(['user_123', 'user_456']).emit('notification', both);
  emitter.to('user_456').emit('chat', 'yo', 2);

  const offsets123 = await receiveAll(u123, [
    { data: like },
    { data: stamped },
    { event: 'announcement', data: announcement },
    { data: both },
  ]);
  const offsets456 = await receiveAll(u456, [
    { event: 'announcement', data: announcement },
    { data: both },
    { event: 'chat', data: ['yo', 2] },
  ]);
  // The same pushes, so the same offsets, for both users.
  assert.deepEqual(offsets456.slice(0, 2), offsets123.slice(2, 4), 'announcement and both');
  // Then the control API's end marker for both (the emitter publishes and forgets, so only now is
  // it known to come after the emitted ones): nothing more came in between, and pushes of both
  // kinds are in one log.
  const sentinel = { message: 'sentinel' };
  const last = await post(n1.control, '/v1/notifications', {
    userIds: ['123', '456'],
    notification: sentinel,
  });
  await receiveAll([...u123, ...u456], [{ data: sentinel, offset: last.offset }]);
  assertIncreasing([...offsets123, offsets456[2], last.offset], 'emitted, then pushed');

  // One node read the emitter's channels: each message was pushed once.
  const counts = await emittedCounts(nodes);
  assert.deepEqual(
    counts.map((c) => c.refused),
    [0, 0, 0],
    `refused: ${JSON.stringify(counts)}`,
  );
  assert.deepEqual(
    counts.map((c) => c.emitted).sort(),
    [0, 0, 5],
    `one node pushed the 5 emitted messages: ${JSON.stringify(counts)}`,
  );

  // Emitted pushes enter the log: the raw device on node 1 drops, misses two, and resubscribes on
  // node 2 with the last offset it saw (the sentinel's).
  const [sio123, raw123] = u123;
  raw123.ws.terminate();
  const missed = [
    { type: 'MISSED', n: 1 },
    { type: 'MISSED', n: 2 },
  ];
  for (const n of missed) emitter.to('user_123').emit('notification', n);
  // Logged, once the device that stayed got them.
  const missedOffsets = await receiveAll(
    [sio123],
    missed.map((data) => ({ data })),
  );
  const { device: back, answer } = await resubscribeRaw(
    s,
    n2,
    '123',
    last.offset,
    '123/ws back on node 2',
  );
  assert.deepEqual(withoutOffset(answer), {
    userId: '123',
    socketId: answer.socketId,
    recovered: true,
  });
  const after = { message: 'after the recovery' };
  const afterAnswer = await push(n0.control, '123', after);
  await receiveAll(
    [back],
    [
      { data: missed[0], offset: missedOffsets[0] },
      { data: missed[1], offset: missedOffsets[1] },
      { data: after, offset: afterAnswer.offset },
    ],
  );
});

test('a node killed with SIGKILL: clients move on, its presence expires', limit, async (t) => {
  const s = scope(t);
  const { redis, nodes } = await cluster(s);
  const client = await redisClient(s, redis);
  const emitter = new Emitter(client);
  await emitterRead(client);

  // The node to kill is the lead, the one reading the emitter's channels, so that the lead has to
  // pass on: found with an emitted push to a user no one holds.
  emitter.to('user_nobody').emit('notification', { probe: true });
  const counts = await eventually('the probe pushed', async () => {
    const c = await emittedCounts(nodes);
    return c.some((x) => x.emitted === 1) ? c : false;
  });
  const lead = counts.findIndex((c) => c.emitted === 1);
  const doomed = nodes[lead];
  const [a, b] = nodes.filter((_, i) => i !== lead);

  const userId = 'kim';
  // On the doomed node: a socket.io-client that retries quickly, and a raw client.
  const sioMoving = await sioDevice(s, doomed, userId, 'kim/socket.io on the killed node', {
    transports: ['websocket'],
    reconnectionDelay: 200,
    reconnectionDelayMax: 500,
  });
  const rawMoving = await rawDevice(s, doomed, userId, 'kim/ws on the killed node');
  // On the survivors, devices that stay.
  const staying = [
    await sioDevice(s, a, userId, 'kim/socket.io websocket on survivor A', {
      transports: ['websocket'],
    }),
    await sioDevice(s, b, userId, 'kim/socket.io polling on survivor B', {
      transports: ['polling'],
      upgrade: false,
    }),
    await rawDevice(s, b, userId, 'kim/ws on survivor B'),
  ];
  await eventually('5 sockets on 3 nodes', async () => {
    const u = await user(a.control, userId);
    return u.sockets === 5 && u.nodes === 3;
  });

  const first = { message: 'before the kill' };
  const firstAnswer = await push(a.control, userId, first);
  assert.deepEqual(withoutOffset(firstAnswer), { nodes: 3, cluster: 'ok' });
  await receiveAll(
    [sioMoving, rawMoving, ...staying],
    [{ data: first, offset: firstAnswer.offset }],
  );

  // The kill. The raw client sees its connection go; socket.io-client too, and retries against
  // the dead node until the test (a load balancer, as it were) points it at a survivor.
  const rawClosed = once(rawMoving.ws, 'close');
  assert.deepEqual(await doomed.kill(), { code: null, signal: 'SIGKILL' });
  assert.equal(await rawClosed, 1006, 'the raw client lost its connection without a close frame');
  assert.equal(await sioMoving.disconnects.next(), 'transport close');

  // Pushes go on meanwhile, on both survivors.
  const away = [];
  for (const [i, node] of [a, b].entries()) {
    const data = { message: `while away ${i + 1}` };
    away.push({ data, offset: (await push(node.control, userId, data)).offset });
  }

  // The dead node stops counting, with its sockets, once its expiry (1 s) passes.
  for (const [name, node] of [
    ['A', a],
    ['B', b],
  ]) {
    const u = await eventually(`survivor ${name} forgetting the killed node`, async () => {
      const v = await user(node.control, userId);
      return v.nodes === 2 ? v : false;
    });
    assert.deepEqual(withoutAddresses(u), { userId, online: true, sockets: 3, nodes: 2, cluster: 'ok' }, name);
  }
  // And pushes are no longer routed to it.
  const routed = { message: 'routed to the survivors' };
  const routedAnswer = await push(b.control, userId, routed);
  assert.deepEqual(withoutOffset(routedAnswer), { nodes: 2, cluster: 'ok' });
  away.push({ data: routed, offset: routedAnswer.offset });

  // The raw client comes back on survivor B with the last offset it saw: it gets what it missed,
  // in order, with the offsets the pushes answered.
  const { device: rawBack, answer } = await resubscribeRaw(
    s,
    b,
    userId,
    firstAnswer.offset,
    'kim/ws back on survivor B',
  );
  assert.deepEqual(withoutOffset(answer), { userId, socketId: answer.socketId, recovered: true });
  await receiveAll([rawBack, ...staying], away);

  // socket.io-client, pointed at survivor A, takes its session back there: a node keeps each
  // connected session in Redis as it changes, so the session outlives a node killed without a
  // word. What it missed comes first, with its offsets; its subscription came back with it.
  sioMoving.socket.io.uri = a.wsUrl;
  const again = await sioMoving.connects.next();
  assert.equal(again.recovered, true, 'the session outlived its node');
  await receiveAll([sioMoving], away);
  await eventually('5 sockets on the 2 survivors', async () => {
    const u = await user(b.control, userId);
    return u.sockets === 5 && u.nodes === 2;
  });

  // The emitter's lead passed to a survivor once the dead node's hold lapsed. (The dead node's
  // own subscription went with its connections, long before its expiry passed.)
  await emitterRead(client);
  const emitted = { message: 'emitted after the lead died' };
  emitter.to(`user_${userId}`).emit('notification', emitted);
  const everyone = [sioMoving, rawBack, ...staying];
  await receiveAll(everyone, [{ data: emitted }]);
  const survivorCounts = await emittedCounts([a, b]);
  assert.deepEqual(
    survivorCounts.map((c) => c.emitted).sort(),
    [0, 1],
    `one survivor pushed it: ${JSON.stringify(survivorCounts)}`,
  );

  // Every device, moved or not, gets the next push once.
  const sentinel = { message: 'sentinel' };
  const last = await push(a.control, userId, sentinel);
  assert.deepEqual(withoutOffset(last), { nodes: 2, cluster: 'ok' });
  await receiveAll(everyone, [{ data: sentinel, offset: last.offset }]);
});

test('Redis killed and restarted on its port: degraded, then a cluster again', limit, async (t) => {
  const s = scope(t);
  const { redis, nodes } = await cluster(s);
  const [n0, n1, n2] = nodes;
  const client = await redisClient(s, redis);
  const emitter = new Emitter(client);

  const near = await sioDevice(s, n0, 'ann', 'ann/socket.io on node 0', {
    transports: ['websocket'],
  });
  const far = await rawDevice(s, n1, 'ann', 'ann/ws on node 1');
  await eventually('ann on 2 nodes', async () => (await user(n2.control, 'ann')).nodes === 2);
  const before = await push(n2.control, 'ann', { message: 'before' });
  await receiveAll([near, far], [{ data: { message: 'before' }, offset: before.offset }]);

  await redis.kill();
  await Promise.all(
    nodes.map((node, i) =>
      eventually(`node ${i} not ready without Redis (/readyz 503)`, async () => {
        return !(await ready(node));
      }),
    ),
  );
  // Each node still serves its own sockets, and says that it is on its own: such a push is not
  // in the cluster's log, so it comes without an offset.
  const alone0 = { message: 'to node 0 while Redis is away' };
  assert.deepEqual(await push(n0.control, 'ann', alone0), { sockets: 1, cluster: 'degraded' });
  const nearGot = await near.inbox.next();
  assert.deepEqual(Object.keys(nearGot), ['event', 'args'], JSON.stringify(nearGot));
  assert.equal(nearGot.event, 'notification', JSON.stringify(nearGot));
  assert.equal(nearGot.args.length, 1, `no offset: ${JSON.stringify(nearGot)}`);
  assertNotification(nearGot.args[0], alone0);
  const alone1 = { message: 'to node 1 while Redis is away' };
  assert.deepEqual(await push(n1.control, 'ann', alone1), { sockets: 1, cluster: 'degraded' });
  const farGot = await far.inbox.next();
  assert.deepEqual(Object.keys(farGot).sort(), ['data', 'event'], JSON.stringify(farGot));
  assert.equal(farGot.event, 'notification', JSON.stringify(farGot));
  assertNotification(farGot.data, alone1);
  assert.deepEqual(withoutAddresses(await user(n1.control, 'ann')), {
    userId: 'ann',
    online: true,
    sockets: 1,
    nodes: 1,
    cluster: 'degraded',
  });

  // Back on the same port, empty: the nodes reconnect, enter their users again and serve each
  // other, and a node takes the emitter's lead again. The log's epoch is new, and what was
  // pushed before a node entered its users again did not reach it: every client is told,
  // closed to reconnect (1012 for a raw one), and not recovered.
  const farClosed = new Promise((resolve) => far.ws.once('close', (code) => resolve(code)));
  await redis.restart();
  await Promise.all(nodes.map((node, i) => eventually(`node ${i} ready again`, () => ready(node))));
  assert.equal(await farClosed, 1012, 'the raw client is closed with 1012 (service restart)');
  await near.disconnects.next();
  assert.equal((await near.connects.next()).recovered, false, 'socket.io-client: not recovered');
  await assertSubscribed(near, 'ann');
  const { device: far2, answer: resumed } = await resubscribeRaw(
    s,
    n1,
    'ann',
    before.offset,
    'ann/ws on node 1, again',
  );
  assert.equal(resumed.recovered, false, JSON.stringify(resumed));
  await eventually('ann on 2 nodes again', async () => {
    const u = await user(n2.control, 'ann');
    return u.nodes === 2 && u.sockets === 2;
  });
  const again = { message: 'Redis is back' };
  const againAnswer = await push(n2.control, 'ann', again);
  assert.deepEqual(withoutOffset(againAnswer), { nodes: 2, cluster: 'ok' });
  await emitterRead(client);
  const emitted = { message: 'emitted after the restart' };
  emitter.to('user_ann').emit('notification', emitted);
  const offsets = await receiveAll(
    [near, far2],
    [{ data: again, offset: againAnswer.offset }, { data: emitted }],
  );
  // Redis lost the log: the epoch is new, and an offset from before cannot be honoured.
  assert.notEqual(parseOffset(offsets[0]).epoch, parseOffset(before.offset).epoch, 'a new epoch');
  const { answer } = await resubscribeRaw(s, n2, 'ann', before.offset, 'ann/ws on node 2');
  assert.deepEqual(withoutOffset(answer), {
    userId: 'ann',
    socketId: answer.socketId,
    recovered: false,
  });
});

test('socket.io-client whose connection drops takes its session elsewhere', limit, async (t) => {
  const s = scope(t);
  const { redis, nodes } = await cluster(s);
  const [n0, n1, n2] = nodes;
  const client = await redisClient(s, redis);
  const sam = await sioDevice(s, n0, 'sam', 'sam/socket.io, node 0 then node 1', {
    transports: ['websocket'],
  });
  const before = { message: 'before the drop' };
  const beforeAnswer = await push(n1.control, 'sam', before);
  await receiveAll([sam], [{ data: before, offset: beforeAnswer.offset }]);
  const { id } = sam.socket;

  // Its TCP connection dies. The client waits until node 0 has kept the session in Redis (under
  // the default --redis-prefix), then comes back through node 1, as a load balancer might send
  // it; pushes go on meanwhile.
  sam.socket.io.reconnection(false);
  sam.socket.io.engine.transport.ws._socket.destroy();
  assert.equal(await sam.disconnects.next(), 'transport close');
  await eventually('the session kept in Redis', async () => {
    const kept = (await metrics(n0.control)).herald_sessions_parked_total >= 1;
    return kept && (await client.keys('herald:session:*')).length === 1;
  });
  const missed = [];
  for (const [i, node] of [n2, n0].entries()) {
    const data = { message: `missed ${i + 1}` };
    missed.push({ data, offset: (await push(node.control, 'sam', data)).offset });
  }
  sam.socket.io.uri = n1.wsUrl;
  sam.socket.io.reconnection(true);
  sam.socket.connect();
  assert.deepEqual(await sam.connects.next(), { id, recovered: true }, 'the same session');
  // What it missed, then (its room came back with the session) what comes next.
  const after = { message: 'after the move' };
  const afterAnswer = await push(n2.control, 'sam', after);
  await receiveAll([sam], [...missed, { data: after, offset: afterAnswer.offset }]);
  const u = await eventually('sam on node 1 alone', async () => {
    const v = await user(n0.control, 'sam');
    return v.nodes === 1 ? v : false;
  });
  assert.deepEqual(withoutAddresses(u), { userId: 'sam', online: true, sockets: 1, nodes: 1, cluster: 'ok' });
  // Taken once: what Redis keeps now is node 1's own copy of the live session (one key, its
  // pid), kept as it changes so that it outlives node 1 too.
  const keys = await client.keys('herald:session:*');
  assert.deepEqual(keys, [`herald:session:${sam.socket._pid}`]);
});
