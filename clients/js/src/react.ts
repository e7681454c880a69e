// herald-client/react: `useNotifications`, a user's notifications as React state, over a Herald
// client (its own or one given) or over a socket.io-client socket connected to herald.

import { useCallback, useEffect, useRef, useState } from 'react';

import { Herald, type Codec, type Token, type WebSocketClass } from './index.js';

/** A notification as the hook keeps it: herald's data, an `id`, whether it was read. */
export type Notification = {
  [key: string]: any;
  /** The notification's own string `id` if it has one, else its offset, else one made up. */
  id: string;
  read: boolean;
  offset?: string;
};

/** The part of a socket.io-client `Socket` the hook uses (it does not import socket.io-client). */
export interface SocketLike {
  connected: boolean;
  on(event: string, fn: (...args: any[]) => void): unknown;
  off(event: string, fn: (...args: any[]) => void): unknown;
  emit(event: string, ...args: any[]): unknown;
}

interface Common {
  /** How many notifications are kept, newest first (50). */
  limit?: number;
  /** Called once for each new notification (a toast, a sound). */
  onNotification?: (n: Notification) => void;
}

export type UseNotificationsOptions = Common &
  (
    | {
        /** herald's `/ws` URL: the hook runs a Herald client of its own, closed on unmount. */
        url: string;
        token?: Token;
        format?: 'json' | 'msgpack';
        msgpack?: Codec;
        WebSocket?: WebSocketClass;
      }
    | {
        /** A Herald client of the app's: the hook subscribes it to the user id. */
        client: Herald;
      }
    | {
        /** A socket.io-client socket connected to herald. */
        socket: SocketLike;
      }
  );

export interface UseNotifications {
  notifications: Notification[];
  isConnected: boolean;
  unreadCount: number;
  /** Marks the notification `id` read, or all of them without an id. */
  markAsRead: (id?: string) => void;
}

let made = 0;

/** The notifications herald delivers to `userId`, newest first. */
export function useNotifications(
  userId: string | number | null | undefined,
  options: UseNotificationsOptions,
): UseNotifications {
  const [notifications, setNotifications] = useState<Notification[]>([]);
  const [isConnected, setConnected] = useState(false);
  // The latest options, read when a notification comes, without reconnecting when they change.
  const latest = useRef(options);
  latest.current = options;
  // Ids already added for `user.current`, so that a notification seen twice is added once.
  const ids = useRef(new Set<string>());
  const user = useRef(userId);

  const o = options as any;
  const url: string | undefined = o.url;
  const client: Herald | undefined = o.client;
  const socket: SocketLike | undefined = o.socket;
  const staticToken = typeof o.token == 'function' ? undefined : o.token;

  useEffect(() => {
    if (user.current !== userId) {
      // Another user's notifications are not this one's.
      user.current = userId;
      ids.current.clear();
      setNotifications([]);
    }
    if (userId == null || userId === '') return;
    const add = (data: any, offset?: string) => {
      const own = data && typeof data.id == 'string' ? data.id : undefined;
      const n: Notification = { ...data, id: own ?? offset ?? `n${++made}`, read: false };
      if (offset) n.offset = offset;
      const limit = latest.current.limit ?? 50;
      const seen = ids.current;
      if (seen.has(n.id)) return;
      seen.add(n.id);
      // Remembers a few more ids than the list keeps, the oldest forgotten first.
      if (seen.size > 2 * limit) seen.delete(seen.values().next().value!);
      setNotifications((list) => [n, ...list].slice(0, limit));
      latest.current.onNotification?.(n);
    };

    if (socket) {
      const subscribe = () => {
        setConnected(true);
        socket.emit('subscribe', String(userId));
      };
      const down = () => setConnected(false);
      const notification = (data: any, offset?: unknown) =>
        add(data, typeof offset == 'string' ? offset : undefined);
      socket.on('connect', subscribe);
      socket.on('disconnect', down);
      socket.on('notification', notification);
      if (socket.connected) subscribe();
      else down();
      return () => {
        socket.off('connect', subscribe);
        socket.off('disconnect', down);
        socket.off('notification', notification);
        if (socket.connected) socket.emit('unsubscribe', String(userId));
      };
    }

    let c = client;
    if (!c) {
      if (!url) return;
      const { format, msgpack, WebSocket } = latest.current as any;
      // A token function is read through `latest`, so that a new function does not reconnect.
      const token =
        typeof o.token == 'function' ? () => (latest.current as any).token() : staticToken;
      c = new Herald(url, { token, format, msgpack, WebSocket });
    }
    const h = c;
    const added = !h.userIds.includes(String(userId));
    const offs = [
      h.on('notification', (data, { offset }) => add(data, offset)),
      h.on('state', (s) => setConnected(s == 'connected')),
    ];
    setConnected(h.state == 'connected');
    h.subscribe(userId);
    return () => {
      offs.forEach((off) => off());
      if (!client) h.close();
      else if (added) h.unsubscribe(userId);
    };
    // `o.token` matters only as a function or not: a new function is read through `latest`.
  }, [userId, url, client, socket, staticToken, typeof o.token == 'function']);

  const markAsRead = useCallback(
    (id?: string) =>
      setNotifications((list) =>
        list.map((n) => (!n.read && (id === undefined || n.id == id) ? { ...n, read: true } : n)),
      ),
    [],
  );

  return {
    notifications,
    isConnected,
    unreadCount: notifications.filter((n) => !n.read).length,
    markAsRead,
  };
}
