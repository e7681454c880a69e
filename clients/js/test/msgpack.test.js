// The MessagePack codec: byte-literal round trips for each type and size class (the spec's own
// encodings), and a cross-check against @msgpack/msgpack.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import * as reference from '@msgpack/msgpack';

import { decode, encode, msgpack } from '../dist/msgpack.js';

const hex = (s) => Uint8Array.from(Buffer.from(s.replace(/\s/g, ''), 'hex'));
const str = (n) => 'x'.repeat(n);

// [value, its encoding in hex]: each encodes to these bytes and decodes back to the value.
const cases = [
  [null, 'c0'],
  [false, 'c2'],
  [true, 'c3'],
  [0, '00'],
  [127, '7f'],
  [128, 'cc80'],
  [255, 'ccff'],
  [256, 'cd0100'],
  [65535, 'cdffff'],
  [65536, 'ce00010000'],
  [4294967295, 'ceffffffff'],
  [4294967296, 'cf0000000100000000'],
  [Number.MAX_SAFE_INTEGER, 'cf001fffffffffffff'],
  [-1, 'ff'],
  [-32, 'e0'],
  [-33, 'd0df'],
  [-128, 'd080'],
  [-129, 'd1ff7f'],
  [-32768, 'd18000'],
  [-32769, 'd2ffff7fff'],
  [-2147483648, 'd280000000'],
  [-2147483649, 'd3ffffffff7fffffff'],
  [Number.MIN_SAFE_INTEGER, 'd3ffe0000000000001'],
  [1.5, 'cb3ff8000000000000'],
  [-0.1, 'cbbfb999999999999a'],
  [2 ** 60, 'cb43b0000000000000'],
  [2n ** 63n, 'cf8000000000000000'],
  [-(2n ** 63n), 'd38000000000000000'],
  ['', 'a0'],
  ['a', 'a161'],
  ['é', 'a2c3a9'],
  [str(31), 'bf' + '78'.repeat(31)],
  [str(32), 'd920' + '78'.repeat(32)],
  [str(256), 'da0100' + '78'.repeat(256)],
  [str(65536), 'db00010000' + '78'.repeat(65536)],
  [new Uint8Array([1, 2]), 'c4020102'],
  [new Uint8Array(256), 'c50100' + '00'.repeat(256)],
  [new Uint8Array(65536), 'c600010000' + '00'.repeat(65536)],
  [[], '90'],
  [[1, [2]], '920191 02'],
  [Array(15).fill(0), '9f' + '00'.repeat(15)],
  [Array(16).fill(0), 'dc0010' + '00'.repeat(16)],
  [Array(65536).fill(0), 'dd00010000' + '00'.repeat(65536)],
  [{}, '80'],
  [{ a: 1, b: 'c' }, '82a16101a162a163'],
  [Object.fromEntries(Array.from({ length: 16 }, (_, i) => [str(i + 1), i])), null],
];

test('each type and size class: the spec encoding, and back', () => {
  for (const [value, bytes] of cases) {
    const what =
      typeof value === 'string' ? `string of ${value.length}` : String(value).slice(0, 40);
    const encoded = encode(value);
    if (bytes !== null)
      assert.deepEqual(
        Buffer.from(encoded).toString('hex'),
        Buffer.from(hex(bytes)).toString('hex'),
        what,
      );
    assert.deepEqual(decode(encoded), value, what);
  }
  const map16 = encode(cases.at(-1)[0]);
  assert.equal(map16[0], 0xde, 'a map of 16 entries is a map 16');
  assert.equal(encode(msgpack.decode(hex('de0000'))).length, 1, 'an empty map 16 decodes to {}');
});

test('decodes what this encoder does not produce: float32, 16-bit and 32-bit forms of small values', () => {
  assert.equal(decode(hex('ca3fc00000')), 1.5);
  assert.equal(decode(hex('cd0001')), 1);
  assert.equal(decode(hex('d9 01 61')), 'a');
  assert.deepEqual(decode(hex('dc0001 01')), [1]);
  assert.deepEqual(decode(hex('df00000001 a161 c0')), { a: null });
  assert.equal(decode(hex('cfffffffffffffffff')), 2n ** 64n - 1n, 'beyond safe: a bigint');
  assert.equal(decode(hex('d0ff')), -1);
});

test('refused: ext types, the never-used byte, truncated input, bytes after the value, odd keys', () => {
  assert.throws(() => decode(hex('d40102')), /unsupported type 0xd4/);
  assert.throws(() => decode(hex('c70101ff')), /unsupported type 0xc7/);
  assert.throws(() => decode(hex('c1')), /unsupported type 0xc1/);
  assert.throws(() => decode(hex('')), /truncated/);
  assert.throws(() => decode(hex('cd01')), /truncated/);
  assert.throws(() => decode(hex('a3 6162')), /truncated/);
  assert.throws(() => decode(hex('c5ffff 00')), /truncated/);
  assert.throws(() => decode(hex('92 01')), /truncated/);
  assert.throws(() => decode(hex('01 02')), /bytes after the value/);
  assert.throws(() => decode(hex('81 90 01')), /map key/);
  assert.throws(() => encode(() => 1), /cannot encode a function/);
  assert.throws(() => encode(2n ** 64n), /out of range/);
});

test('a key named __proto__ is an own property, as JSON.parse makes it', () => {
  const o = decode(encode(JSON.parse('{"__proto__": {"polluted": true}}')));
  assert.deepEqual(Object.keys(o), ['__proto__']);
  assert.equal(o.polluted, undefined);
  assert.equal(Object.getPrototypeOf(o), Object.prototype);
});

test('the same bytes as @msgpack/msgpack, both ways', () => {
  const values = [
    {
      event: 'notification',
      data: {
        type: 'LIKE',
        message: 'Someone liked your post',
        actorId: 'user-9',
        data: { postId: 'p1' },
        timestamp: '2026-11-26T05:00:00.000Z',
      },
      offset: '78132ea6466de59e-12',
    },
    { event: 'subscribe', data: { userIds: ['u1', 'u2'], offset: 'ab-3' } },
    {
      nested: [[[[1.25, -7, 300, -300, 70000, -70000, 2 ** 40, -(2 ** 40)]]]],
      s: 'ünïcødé ✓ 🎉',
      bin: new Uint8Array([0, 255]),
    },
    Array.from({ length: 40 }, (_, i) => ({ [`k${i}`]: str(i * 7) })),
  ];
  for (const v of values) {
    assert.deepEqual(Buffer.from(encode(v)), Buffer.from(reference.encode(v)));
    assert.deepEqual(decode(reference.encode(v)), reference.decode(encode(v)));
  }
  assert.deepEqual(
    decode(encode({ a: undefined, b: 1 })),
    { b: 1 },
    'undefined left out, as JSON does',
  );
});
