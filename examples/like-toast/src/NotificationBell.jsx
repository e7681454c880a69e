// The bell: an unread badge, a dropdown of the notifications (newest first) where a click marks
// one read, and a toast for each new notification, in every tab the user has open.

import { useCallback, useMemo, useRef, useState } from 'react';
import { useNotifications } from 'herald-client/react';

// How long a toast stays up.
const TOAST_MS = 5_000;

function when(timestamp) {
  const t = new Date(timestamp);
  return Number.isNaN(t.getTime()) ? '' : t.toLocaleTimeString();
}

export function NotificationBell({ userId, options, onNotification }) {
  const [toasts, setToasts] = useState([]);
  const [open, setOpen] = useState(false);
  const timers = useRef(new Map());

  const seq = useRef(0);

  const dismiss = useCallback((key) => {
    clearTimeout(timers.current.get(key));
    timers.current.delete(key);
    setToasts((all) => all.filter((t) => t.key !== key));
  }, []);

  // One toast per notification the hook announces: were one announced twice, it would show twice.
  const toast = useCallback(
    (n) => {
      const key = ++seq.current;
      setToasts((all) => [...all, { key, n }]);
      timers.current.set(
        key,
        setTimeout(() => dismiss(key), TOAST_MS),
      );
      onNotification?.(n);
    },
    [dismiss, onNotification],
  );

  const hookOptions = useMemo(() => ({ ...options, onNotification: toast }), [options, toast]);
  const { notifications, isConnected, unreadCount, markAsRead } = useNotifications(
    userId,
    hookOptions,
  );

  return (
    <div className="bell-area">
      <span
        className={`connection ${isConnected ? 'on' : 'off'}`}
        data-connected={String(isConnected)}
      >
        {isConnected ? 'live' : 'reconnecting…'}
      </span>
      <button
        type="button"
        className="bell"
        aria-label={`Notifications, ${unreadCount} unread`}
        aria-expanded={open}
        onClick={() => setOpen((o) => !o)}
      >
        <svg viewBox="0 0 24 24" width="24" height="24" aria-hidden="true">
          <path
            fill="currentColor"
            d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2Z"
          />
        </svg>
        {unreadCount > 0 && <span className="badge">{unreadCount}</span>}
      </button>
      <div className="dropdown" role="menu" hidden={!open}>
        <div className="dropdown-head">
          <span>Notifications</span>
          <button
            type="button"
            className="mark-all"
            disabled={unreadCount === 0}
            onClick={() => markAsRead()}
          >
            Mark all as read
          </button>
        </div>
        {notifications.length === 0 ? (
          <p className="empty">Nothing yet.</p>
        ) : (
          <ul className="notifications">
            {notifications.map((n) => (
              <li
                key={n.id}
                className={`notification ${n.read ? 'read' : 'unread'}`}
                data-id={n.id}
              >
                <button type="button" role="menuitem" onClick={() => markAsRead(n.id)}>
                  <span className="message">{n.message}</span>
                  <span className="time">{when(n.timestamp)}</span>
                </button>
              </li>
            ))}
          </ul>
        )}
      </div>
      <div className="toasts" aria-live="polite">
        {toasts.map(({ key, n }) => (
          <div key={key} className="toast" data-id={n.id} onClick={() => dismiss(key)}>
            <strong>{n.type === 'LIKE' ? '♥' : '•'}</strong> {n.message}
          </div>
        ))}
      </div>
    </div>
  );
}
