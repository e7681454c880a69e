import { fileURLToPath } from 'node:url';

import { defineConfig } from 'vite';

// `herald-client` is the package in clients/js of this repository, bundled from its TypeScript
// sources: the example runs from a clone, without building or publishing the package first. An
// app of your own installs it from npm instead (`npm install herald-client`) and needs no alias.
const client = fileURLToPath(new URL('../../clients/js/src', import.meta.url));

// Vite turns JSX into react/jsx-runtime calls by itself: no React plugin is needed to build.
export default defineConfig({
  resolve: {
    alias: { 'herald-client': client },
    // herald-client's sources import react from outside this folder: one React for all.
    dedupe: ['react', 'react-dom'],
  },
  server: {
    // `npm run dev`: the page with hot reload on 5173, the API from `node server.js` on 3000.
    proxy: { '/api': 'http://127.0.0.1:3000' },
    fs: { allow: ['.', client] },
  },
});
