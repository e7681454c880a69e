// Runs `vite build` when dist/ is missing or older than the page's sources (or herald-client's,
// which the page bundles straight from clients/js/src). `npm start` calls it before the server.

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const built = join(here, 'dist', 'index.html');

// The newest modification time under `path` (a file or a directory), 0 when it does not exist.
function newest(path) {
  if (!existsSync(path)) return 0;
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return Math.max(0, ...readdirSync(path).map((name) => newest(join(path, name))));
}

const sources = [
  'index.html',
  'src',
  'vite.config.js',
  'package-lock.json',
  '../../clients/js/src',
];
const stale =
  !existsSync(built) || sources.some((s) => newest(join(here, s)) > statSync(built).mtimeMs);
if (stale) {
  if (!existsSync(join(here, 'node_modules', 'vite'))) {
    console.error(
      'like-toast: the page needs building and vite is not installed: run `npm ci` first',
    );
    process.exit(1);
  }
  const run = spawnSync('npm', ['run', 'build'], { cwd: here, stdio: 'inherit' });
  process.exit(run.status ?? 1);
}
