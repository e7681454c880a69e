// The client's pure parts: backoff delays, a JWT's exp, offsets.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { backoffDelay, jwtExp, parseOffset, seen, withResume } from '../dist/util.js';
import { jwt } from './helpers.js';

const b = { min: 500, max: 30_000, factor: 2 };

test('backoff: full jitter under a ceiling that doubles up to the maximum', () => {
  const ceilings = [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000];
  ceilings.forEach((ceiling, attempt) => {
    assert.equal(
      backoffDelay(attempt, b, 0, () => 0),
      0,
      `attempt ${attempt} may go at once`,
    );
    assert.equal(
      backoffDelay(attempt, b, 0, () => 0.5),
      ceiling / 2,
    );
    const top = backoffDelay(attempt, b, 0, () => 1 - Number.EPSILON);
    assert.ok(
      top < ceiling && top > ceiling * 0.999,
      `attempt ${attempt}: ${top} under ${ceiling}`,
    );
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(attempt, b);
      assert.ok(d >= 0 && d < ceiling, `attempt ${attempt}: ${d} in [0, ${ceiling})`);
    }
  });
  assert.equal(
    backoffDelay(1_000, b, 0, () => 0.5),
    15_000,
    'no overflow far on',
  );
});

test('backoff: a floor (after close 1008) comes on top of the jitter', () => {
  assert.equal(
    backoffDelay(0, b, 10_000, () => 0),
    10_000,
  );
  assert.equal(
    backoffDelay(0, b, 10_000, () => 0.5),
    10_250,
  );
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(3, b, 10_000);
    assert.ok(d >= 10_000 && d < 14_000, `${d} in [10000, 14000)`);
  }
});

test('jwtExp reads exp from the base64url payload, without verifying', () => {
  assert.equal(jwtExp(jwt({ sub: 'u1', exp: 1_900_000_000 })), 1_900_000_000);
  // Payloads whose base64url has `-`, `_` and needs padding (lengths 1, 2, 3 mod 3).
  for (const sub of ['>>>?', '??>', 'ü~', 'a', 'ab', 'abc']) {
    const token = jwt({ sub, exp: 1_700_000_123 });
    assert.equal(jwtExp(token), 1_700_000_123, token);
  }
  assert.ok(/[-_]/.test(jwt({ sub: '>>>???' })), 'the table above exercises base64url');
  assert.equal(jwtExp(jwt({ sub: 'u1' })), undefined, 'no exp');
  assert.equal(jwtExp(jwt({ exp: '1700000000' })), undefined, 'exp not a number');
  assert.equal(jwtExp('not a token'), undefined);
  assert.equal(jwtExp('a.!!!.c'), undefined);
  assert.equal(jwtExp(''), undefined);
});

test('offsets: parsed, and seen when in the same epoch and not beyond the last', () => {
  assert.deepEqual(parseOffset('78132ea6466de59e-12'), ['78132ea6466de59e', 12]);
  assert.equal(parseOffset('x-1'), undefined);
  assert.equal(parseOffset('ab-'), undefined);
  assert.equal(parseOffset(12), undefined);
  assert.equal(parseOffset(undefined), undefined);

  assert.equal(seen('ab-5', 'ab-5'), true);
  assert.equal(seen('ab-5', 'ab-4'), true);
  assert.equal(seen('ab-5', 'ab-6'), false);
  assert.equal(seen('ab-5', 'cd-1'), false, 'another epoch');
  assert.equal(seen(undefined, 'ab-1'), false, 'nothing delivered yet');
  assert.equal(seen('ab-9', 'ab-10'), false, 'compared as numbers, not strings');
});

test('withResume puts resume=1 in the query once, before any fragment', () => {
  assert.equal(withResume('ws://h/ws'), 'ws://h/ws?resume=1');
  assert.equal(withResume('ws://h/ws?format=msgpack'), 'ws://h/ws?format=msgpack&resume=1');
  assert.equal(withResume('ws://h/ws?resume=1'), 'ws://h/ws?resume=1');
  assert.equal(withResume('ws://h/ws#x'), 'ws://h/ws?resume=1#x');
});
