// examples/curl.md, run: herald started as the page starts it, one raw WebSocket subscribed to
// `user-123` as the page's browser snippet does, then each `sh` block run by bash in order and its
// output compared with the `http` or `text` block after it. What varies from run to run (offsets,
// lengths, Retry-After, socket ids, times, the admin session's cookie) is masked on both sides;
// everything else must be what the page says. The commands run in a directory of their own (the
// admin example keeps its cookie in a file).
//
// `HERALD_UPDATE_DOCS=1 npm test -- curl.test.js` writes the answers herald gave into the page
// instead (then read the diff before committing it).

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import test from 'node:test';

import { recordRaw, scope, subscribeRaw, TEST_TIMEOUT } from './harness.js';

const PAGE = fileURLToPath(new URL('../../examples/curl.md', import.meta.url));
const UPDATE = process.env.HERALD_UPDATE_DOCS === '1';

// Each fenced `sh` block, with the answer block right after it (if any).
function examples(markdown) {
  const blocks = [...markdown.matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((m) => ({
    lang: m[1],
    text: m[2],
    start: m.index + 3 + m[1].length + 1,
  }));
  const pairs = [];
  for (let i = 0; i < blocks.length; i++) {
    if (blocks[i].lang !== 'sh') continue;
    const next = blocks[i + 1];
    const answer = next && (next.lang === 'http' || next.lang === 'text') ? next : null;
    pairs.push({ command: blocks[i].text, answer });
  }
  return pairs;
}

// What differs between two runs that give the same answers.
function masked(text) {
  return text
    .replace(/\r\n/g, '\n')
    .replace(/"offset":"[0-9a-f]+-\d+"/g, '"offset":"…"')
    .replace(/^(Content-Length|Retry-After): \d+$/gim, '$1: …')
    .replace(/"retryAfter":\d+/g, '"retryAfter":…')
    .replace(/"(socketId|subscribedAt)":"[^"]+"/g, '"$1":"…"')
    .replace(/^(Set-Cookie: herald_admin=)\d+\.[\w-]+/gim, '$1…')
    .trimEnd();
}

test('every call of examples/curl.md answers as the page says', { timeout: TEST_TIMEOUT }, async (t) => {
  const markdown = readFileSync(PAGE, 'utf8');
  const [start, ...calls] = examples(markdown);

  // The page's first command starts herald: its environment assignments are herald's here.
  const m = /^((?:[A-Z_]+=\S+ )*)cargo run --release\n$/.exec(start.command);
  assert.ok(m, `the page starts herald with \`[VAR=value ...] cargo run --release\`: ${start.command}`);
  const env = Object.fromEntries(m[1].trim().split(/\s+/).filter(Boolean).map((a) => a.split('=')));
  assert.ok(calls.length >= 15, `the page shows every call (${calls.length} found)`);

  const s = scope(t);
  const herald = await s.herald({ env });
  const ws = await s.ws(herald.wsUrl);
  await subscribeRaw(ws, recordRaw(ws), 'user-123');

  const cwd = mkdtempSync(join(tmpdir(), 'herald-curl-'));
  s.defer(() => rmSync(cwd, { recursive: true, force: true }));
  const edits = [];
  for (const { command, answer } of calls) {
    const script = command.replaceAll('localhost:5001', `127.0.0.1:${herald.controlPort}`);
    assert.notEqual(script, command, `the command talks to the control API: ${command}`);
    const run = spawnSync('bash', ['-o', 'pipefail', '-c', script], {
      cwd,
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(run.status, 0, `${command}\nexited ${run.status}: ${run.stderr}`);
    const got = run.stdout.replace(/\r\n/g, '\n');
    assert.ok(answer, `an answer block follows:\n${command}`);
    if (UPDATE) {
      edits.push({ start: answer.start, end: answer.start + answer.text.length, text: got.trimEnd() + '\n' });
    } else {
      assert.equal(masked(got), masked(answer.text), `the answer to\n${command}`);
    }
  }

  if (UPDATE) {
    let page = markdown;
    for (const e of edits.reverse()) page = page.slice(0, e.start) + e.text + page.slice(e.end);
    writeFileSync(PAGE, page);
  }
});
