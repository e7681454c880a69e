// The page: who you are comes from the URL (`?user=bob`), the posts of the others have a Like
// button, and the bell in the header shows your notifications as herald delivers them.
// `?transport=socketio` reaches herald through socket.io-client instead of herald's own client.

import { StrictMode, useCallback, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { io } from 'socket.io-client';

import { NotificationBell } from './NotificationBell.jsx';
import './style.css';

const params = new URLSearchParams(window.location.search);
const userId = params.get('user');
const transport = params.get('transport') === 'socketio' ? 'socketio' : 'herald';

async function getJson(path) {
  const res = await fetch(path);
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}

// A fresh token for the signed-in user, when herald checks them (the backend has
// HERALD_JWT_SECRET): `{token, exp}`.
const fetchToken = () => getJson(`/api/token?userId=${encodeURIComponent(userId)}`);

// The socket.io-client URL for herald's WebSocket URL: same host, http(s), Socket.IO's own path.
function socketIoOrigin(heraldUrl) {
  const url = new URL(heraldUrl);
  url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
  return url.origin;
}

// What `useNotifications` is given: herald's client on `url`, or a socket.io-client socket. Made
// once for the page, before React renders, so that every render sees the same connection.
async function notificationOptions(config) {
  if (transport === 'socketio') {
    // herald closes a socket at its token's `exp` unless it was sent a fresh one first
    // (`refresh`); herald's own client does that by itself, here it is the page's job.
    let refresh;
    const freshToken = async () => {
      const { token, exp } = await fetchToken();
      clearTimeout(refresh);
      refresh = setTimeout(
        () =>
          freshToken().then(
            // Only on a connected socket: socket.io-client would buffer the emit while away and
            // send a token that may have expired meanwhile; a reconnection fetches its own.
            (t) => socket.connected && socket.emit('refresh', t),
            () => {},
          ),
        // A minute before `exp`, or halfway there for a token of less than two minutes, as
        // herald's client does.
        Math.max(exp * 1000 - Date.now() - 60_000, (exp * 1000 - Date.now()) / 2),
      );
      return token;
    };
    const socket = io(socketIoOrigin(config.heraldUrl), {
      // WebSocket only: the page's origin is not herald's, and polling would need --cors-origins.
      transports: ['websocket'],
      // Called before each connection, so that a reconnection carries a fresh token; without one
      // herald answers `unauthorized` and socket.io-client tries again.
      auth: config.auth
        ? (cb) =>
            freshToken().then(
              (t) => cb({ token: t }),
              () => cb({}),
            )
        : undefined,
    });
    return { socket };
  }
  // herald's client calls the function before each connection and before the token expires.
  const token = config.auth ? async () => (await fetchToken()).token : undefined;
  return { url: config.heraldUrl, token };
}

function Post({ post, users, onLiked }) {
  const [status, setStatus] = useState('');
  const [busy, setBusy] = useState(false);
  const like = async () => {
    setBusy(true);
    try {
      const res = await fetch('/api/likes', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ postId: post.id, userId }),
      });
      const body = await res.json();
      if (body.post) onLiked(body.post);
      const name = users[post.author];
      if (res.ok) {
        setStatus(
          body.sockets === undefined
            ? `${name} was notified`
            : body.sockets === 0
              ? `${name} has no tab open: they will see it when they come back within herald's recovery window`
              : `${name} was notified in ${body.sockets} open tab${body.sockets === 1 ? '' : 's'}`,
        );
      } else if (res.status === 429) {
        setStatus(
          `Liked, but ${name} gets too many notifications: not notified (retry in ${body.retryAfter} s)`,
        );
      } else {
        setStatus(`Liked, but not notified: ${body.error}`);
      }
    } catch (e) {
      setStatus(`Not liked: ${e.message}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <li className="post" data-post={post.id}>
      <div className="post-title">{post.title}</div>
      <div className="post-meta">
        by {users[post.author]} · <span className="likes">{post.likes}</span> like
        {post.likes === 1 ? '' : 's'}
      </div>
      {post.author !== userId && (
        <>
          <button type="button" className="like" disabled={busy} onClick={like}>
            ♥ Like
          </button>
          <span className="like-status" role="status">
            {status}
          </span>
        </>
      )}
    </li>
  );
}

function App({ users, options }) {
  const [posts, setPosts] = useState([]);
  const reload = useCallback(() => getJson('/api/posts').then(setPosts, () => {}), []);
  useEffect(() => {
    reload();
  }, [reload]);
  const replace = useCallback(
    (p) => setPosts((all) => all.map((q) => (q.id === p.id ? p : q))),
    [],
  );
  const others = posts.filter((p) => p.author !== userId);
  const mine = posts.filter((p) => p.author === userId);
  return (
    <>
      <header>
        <span className="me">
          Signed in as <strong>{users[userId]}</strong>
        </span>
        <Switcher />
        {/* A like of one of my posts: the counts below are read again. */}
        <NotificationBell userId={userId} options={options} onNotification={reload} />
      </header>
      <main>
        <h2>Posts of others</h2>
        <ul className="posts">
          {others.map((p) => (
            <Post key={p.id} post={p} users={users} onLiked={replace} />
          ))}
        </ul>
        <h2>Your posts</h2>
        <ul className="posts mine">
          {mine.map((p) => (
            <Post key={p.id} post={p} users={users} onLiked={replace} />
          ))}
        </ul>
      </main>
    </>
  );
}

function link(user, via) {
  const q = new URLSearchParams({ user });
  if (via === 'socketio') q.set('transport', 'socketio');
  return `?${q}`;
}

function Switcher() {
  const other = transport === 'socketio' ? 'herald' : 'socketio';
  return (
    <nav className="switcher">
      via {transport === 'socketio' ? 'socket.io-client' : "herald's client"} (
      <a href={link(userId, other)}>
        use {other === 'socketio' ? 'socket.io-client' : "herald's client"}
      </a>
      )
    </nav>
  );
}

function SignIn({ users }) {
  return (
    <main className="sign-in">
      <h1>like-toast</h1>
      <p>Who are you? Open two tabs as one user and one as another, then like a post.</p>
      <ul>
        {Object.entries(users).map(([id, name]) => (
          <li key={id}>
            <a href={link(id, transport)}>{name}</a>
          </li>
        ))}
      </ul>
    </main>
  );
}

async function main() {
  const root = createRoot(document.getElementById('root'));
  const [config, users] = await Promise.all([getJson('/api/config'), getJson('/api/users')]);
  if (!users[userId]) {
    root.render(<SignIn users={users} />);
    return;
  }
  document.title = `${users[userId]} · like-toast`;
  const options = await notificationOptions(config);
  root.render(
    <StrictMode>
      <App users={users} options={options} />
    </StrictMode>,
  );
}

main().catch((e) => {
  document.getElementById('root').textContent = `The page could not start: ${e.message}`;
});
