// Prints the size of each entry point as an app would ship it: bundled and minified by esbuild
// (`react` left out, as the app has it anyway), then gzipped at level 9. Run after `npm run build`.

import { gzipSync } from 'node:zlib';

import { build } from 'esbuild';

const entries = {
  '.': 'dist/index.js',
  './msgpack': 'dist/msgpack.js',
  './react': 'dist/react.js',
};

for (const [name, file] of Object.entries(entries)) {
  const out = await build({
    entryPoints: [file],
    bundle: true,
    minify: true,
    format: 'esm',
    external: ['react'],
    write: false,
  });
  const code = out.outputFiles[0].contents;
  const gzip = gzipSync(code, { level: 9 }).length;
  console.log(
    `${name.padEnd(10)} ${String(code.length).padStart(6)} B min ${String(gzip).padStart(6)} B min+gzip`,
  );
}
