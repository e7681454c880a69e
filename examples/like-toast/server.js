// The backend of the like-toast example: a few posts, and a like that becomes a notification to
// the post's author through herald's control API. No framework and no dependency: node:http,
// node:crypto and fetch. It also serves the page that `npm run build` wrote to dist/.
//
//   PORT                port to listen on (3000; 0 picks a free one); HOST (127.0.0.1)
//   HERALD_CONTROL      herald's control API (http://127.0.0.1:5001; herald's own 127.0.0.1:5001
//                       form too)
//   HERALD_URL          herald's public WebSocket URL, as the browser reaches it
//                       (ws://localhost:5000/ws); the page reads it from GET /api/config
//   HERALD_API_KEY      sent as `Authorization: Bearer ...` to the control API when set
//   HERALD_JWT_SECRET   when set (herald run with the same --jwt-secret), GET /api/token signs
//                       HS256 tokens for the page's user, valid TOKEN_TTL seconds (900)
//
// Routes:
//   GET  /api/config            {heraldUrl, auth}
//   GET  /api/posts             [{id, title, author, authorName, likes}]
//   GET  /api/token?userId=u    {token, exp}   (404 without HERALD_JWT_SECRET)
//   POST /api/likes {postId, userId}  the like, then herald's answer (see `like`)
//   GET  anything else          a file of dist/, index.html for `/`

import { createHmac } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const PORT = Number(process.env.PORT ?? 3000);
const HOST = process.env.HOST ?? '127.0.0.1';
// herald reads HERALD_CONTROL too, as `IP:PORT`: that form is taken here as well, so that one
// environment serves both.
const control = process.env.HERALD_CONTROL ?? 'http://127.0.0.1:5001';
const HERALD_CONTROL = (/^https?:\/\//.test(control) ? control : `http://${control}`).replace(
  /\/+$/,
  '',
);
const HERALD_URL = process.env.HERALD_URL ?? 'ws://localhost:5000/ws';
// herald accepts several keys, comma-separated (while one replaces another): the first is sent.
const HERALD_API_KEY = (process.env.HERALD_API_KEY ?? '').split(',')[0].trim();
const HERALD_JWT_SECRET = process.env.HERALD_JWT_SECRET ?? '';

// How long a token the backend signs stays valid, in seconds (TOKEN_TTL, 900): herald closes the
// socket (4003) past it unless the page sent a fresh one before.
const TOKEN_LIFETIME_S = Number(process.env.TOKEN_TTL ?? 15 * 60);
// How long a like waits for herald before answering 502.
const HERALD_TIMEOUT_MS = 5_000;

const DIST = fileURLToPath(new URL('dist/', import.meta.url));

// The app's data, in memory: what a real backend keeps in its database.
const USERS = { alice: 'Alice', bob: 'Bob', carol: 'Carol' };
const POSTS = [
  { id: 'p1', author: 'bob', title: 'Sourdough, third attempt' },
  { id: 'p2', author: 'bob', title: 'A walk along the river' },
  { id: 'p3', author: 'alice', title: 'My desk, finally tidy' },
  { id: 'p4', author: 'carol', title: 'Notes on WebSockets' },
];
const likes = new Map(POSTS.map((p) => [p.id, 0]));
const isUser = (id) => typeof id === 'string' && Object.hasOwn(USERS, id);

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.map': 'application/json',
};

function json(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

async function readJson(req) {
  let body = '';
  req.setEncoding('utf8');
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 16_384) throw new Error('body too large');
  }
  return JSON.parse(body);
}

function base64url(bytes) {
  return Buffer.from(bytes).toString('base64url');
}

// An HS256 JWT for `userId`, as herald's --jwt-secret expects: `sub` the user id, `exp` required.
// This demo signs for whoever asks: a real backend signs only for the user its session
// authenticated.
function sign(userId) {
  const exp = Math.floor(Date.now() / 1000) + TOKEN_LIFETIME_S;
  const head = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = base64url(JSON.stringify({ sub: userId, exp }));
  const mac = createHmac('sha256', HERALD_JWT_SECRET).update(`${head}.${claims}`).digest();
  return { token: `${head}.${claims}.${base64url(mac)}`, exp };
}

function publicPost(p) {
  return {
    id: p.id,
    title: p.title,
    author: p.author,
    authorName: USERS[p.author],
    likes: likes.get(p.id),
  };
}

// A like: counted, then the author is told through herald. The answer:
//   200 {post, notified: author, sockets, offset}   herald took the push (its 202); `sockets` is
//       how many of the author's open tabs it went to (absent when herald answered without counts)
//   429 with herald's Retry-After                    the author is over herald's --user-rate
//   503 with herald's Retry-After                    herald shutting down or full: nothing was
//       delivered, so a retry cannot notify twice
//   502 {error}                                      herald unreachable, or refusing the push
// The like is counted either way: it happened; only the notification may not have.
async function like(req, res) {
  let body;
  try {
    body = await readJson(req);
  } catch {
    return json(res, 400, { error: 'expected a JSON body {postId, userId}' });
  }
  const post = POSTS.find((p) => p.id === body?.postId);
  const liker = body?.userId;
  if (!post) return json(res, 404, { error: `no post ${JSON.stringify(body?.postId)}` });
  if (!isUser(liker)) return json(res, 400, { error: `no user ${JSON.stringify(liker)}` });
  if (liker === post.author) return json(res, 400, { error: 'that is your own post' });
  likes.set(post.id, likes.get(post.id) + 1);

  const notification = {
    type: 'LIKE',
    message: `${USERS[liker]} liked your post "${post.title}"`,
    actorId: liker,
    data: { postId: post.id },
  };
  const headers = { 'content-type': 'application/json' };
  if (HERALD_API_KEY) headers.authorization = `Bearer ${HERALD_API_KEY}`;
  let answer;
  try {
    answer = await fetch(
      `${HERALD_CONTROL}/v1/users/${encodeURIComponent(post.author)}/notifications`,
      {
        method: 'POST',
        headers,
        body: JSON.stringify(notification),
        signal: AbortSignal.timeout(HERALD_TIMEOUT_MS),
      },
    );
  } catch (e) {
    console.warn(
      `like ${post.id} by ${liker}: herald unreachable: ${e.cause?.message ?? e.message}`,
    );
    return json(res, 502, { error: 'herald unreachable', post: publicPost(post) });
  }
  const text = await answer.text();
  let herald = {};
  try {
    herald = JSON.parse(text);
  } catch {
    // Not JSON: kept out of the answer.
  }
  if (answer.status === 202) {
    return json(res, 200, { post: publicPost(post), notified: post.author, ...herald });
  }
  if (answer.status === 429 || answer.status === 503) {
    const retryAfter = answer.headers.get('retry-after') ?? String(herald.retryAfter ?? 1);
    return json(
      res,
      answer.status,
      {
        error:
          answer.status === 429
            ? `${USERS[post.author]} gets too many notifications; retry later`
            : 'herald is busy; retry later',
        retryAfter: Number(retryAfter),
        post: publicPost(post),
      },
      { 'retry-after': retryAfter },
    );
  }
  console.warn(`like ${post.id} by ${liker}: herald answered ${answer.status} ${text}`);
  return json(res, 502, {
    error: `herald answered ${answer.status}`,
    herald: herald.error ?? text,
    post: publicPost(post),
  });
}

async function serveFile(res, pathname) {
  let relative;
  try {
    relative = pathname === '/' ? 'index.html' : decodeURIComponent(pathname.slice(1));
  } catch {
    return json(res, 400, { error: 'bad path' });
  }
  const path = normalize(join(DIST, relative));
  if (!path.startsWith(DIST) || path.endsWith(sep)) return json(res, 404, { error: 'not found' });
  let content;
  try {
    content = await readFile(path);
  } catch {
    if (pathname === '/') {
      return json(res, 503, { error: 'the page is not built: npm run build (npm start does it)' });
    }
    return json(res, 404, { error: 'not found' });
  }
  res.writeHead(200, {
    'content-type': TYPES[extname(path)] ?? 'application/octet-stream',
    'content-length': content.length,
    // Vite names assets by their content: they never change; index.html names the current ones.
    'cache-control': pathname.startsWith('/assets/')
      ? 'public, max-age=31536000, immutable'
      : 'no-cache',
  });
  res.end(content);
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://localhost');
  const route = `${req.method} ${url.pathname}`;
  if (route === 'GET /api/config') {
    return json(res, 200, { heraldUrl: HERALD_URL, auth: HERALD_JWT_SECRET !== '' });
  }
  if (route === 'GET /api/posts') return json(res, 200, POSTS.map(publicPost));
  if (route === 'GET /api/users') return json(res, 200, USERS);
  if (route === 'GET /api/token') {
    if (!HERALD_JWT_SECRET)
      return json(res, 404, { error: 'no HERALD_JWT_SECRET: herald runs without auth' });
    const userId = url.searchParams.get('userId') ?? '';
    if (!isUser(userId)) return json(res, 400, { error: `no user ${JSON.stringify(userId)}` });
    return json(res, 200, sign(userId));
  }
  if (route === 'POST /api/likes') return like(req, res);
  if (url.pathname.startsWith('/api/')) return json(res, 404, { error: 'not found' });
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return json(res, 405, { error: 'method not allowed' }, { allow: 'GET, HEAD' });
  }
  return serveFile(res, url.pathname);
}

const server = createServer((req, res) => {
  handle(req, res).catch((e) => {
    console.error(e);
    if (!res.headersSent) json(res, 500, { error: 'internal error' });
    else res.destroy();
  });
});
server.listen(PORT, HOST, () => {
  const { port } = server.address();
  const host = HOST === '127.0.0.1' || HOST === '::1' ? 'localhost' : HOST;
  console.log(
    `like-toast listening on http://${host}:${port}/ (herald control ${HERALD_CONTROL}, page to ${HERALD_URL})`,
  );
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    server.close();
    server.closeAllConnections();
  });
}
