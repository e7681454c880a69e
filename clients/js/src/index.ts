// herald-client: one WebSocket to herald's `/ws` endpoint that stays up. It reconnects with
// jittered exponential backoff, resubscribes with the last offset so that herald replays what was
// missed, delivers each notification once, answers herald's close codes and refreshes the token
// before it expires. No runtime dependency: MessagePack comes from `herald-client/msgpack` or any
// codec with `encode`/`decode`.

import { backoffDelay, jwtExp, parseOffset, seen, withResume } from './util.js';

export type { Backoff } from './util.js';

/** The connection's state, as the `state` event reports it. */
export type State = 'connecting' | 'connected' | 'disconnected';

/** A MessagePack codec: `herald-client/msgpack`'s `msgpack`, or `@msgpack/msgpack`. */
export interface Codec {
  encode(value: unknown): Uint8Array;
  decode(bytes: Uint8Array): unknown;
}

/** A token, or a function that fetches one (called before each connect and to refresh). */
export type Token = string | (() => string | Promise<string>);

/** The WebSocket constructor used: the browser's (or Node 22's), or the `ws` package's. */
export type WebSocketClass = new (url: string, protocols?: string | string[]) => WebSocket;

export interface HeraldOptions {
  /** A JWT, or a function returning one; sent as the first message (`auth`). */
  token?: Token;
  /** `json` (default) or `msgpack` (subprotocol `herald.msgpack`, needs `msgpack`). */
  format?: 'json' | 'msgpack';
  /** The MessagePack codec, required with `format: 'msgpack'`. */
  msgpack?: Codec;
  /** The WebSocket constructor; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketClass;
  /** Ceiling of the first reconnect delay in ms (500); full jitter below it. */
  minDelay?: number;
  /** Ceiling of any reconnect delay in ms (30,000). */
  maxDelay?: number;
  /** Growth of the ceiling per failed attempt (2). */
  factor?: number;
  /** Extra wait in ms after herald closed with 1008, too many messages (10,000). */
  policyDelay?: number;
  /** Refresh the token this many ms before its `exp` (60,000; at most half its remaining life). */
  refreshBefore?: number;
  /** The last offset seen by an earlier client (kept across a page reload): resume from it. */
  offset?: string;
}

/** The `subscribed` event: herald's answer to a subscribe. */
export interface Subscribed {
  userIds: string[];
  socketId: string;
  offset?: string;
  /** Whether what was missed since the offset sent is replayed; undefined if none was sent. */
  recovered?: boolean;
}

/** The `error` event: herald's error events (`{message}`), and tokens refused (with `code`). */
export interface HeraldError {
  message: string;
  code?: number;
}

export interface Events {
  notification: (data: any, meta: { offset?: string }) => void;
  state: (state: State) => void;
  subscribed: (s: Subscribed) => void;
  error: (e: HeraldError) => void;
}

type Message = { event?: unknown; data?: any; offset?: unknown };

const MAX_TIMEOUT = 0x7fffffff;

/**
 * A client of herald's `/ws`. It connects at once (in a microtask, so that handlers attached
 * right after `new` see every event) and stays connected until `close()`.
 */
export class Herald {
  private url: string;
  private o: HeraldOptions;
  private WS: WebSocketClass;
  private handlers: { [event: string]: Set<Function> } = {};
  private users = new Set<string>();
  private ws?: WebSocket;
  private timer?: ReturnType<typeof setTimeout>;
  private refreshTimer?: ReturnType<typeof setTimeout>;
  private attempt = 0;
  private closed = false;
  private s: State = 'disconnected';
  private last?: string;
  private rec?: boolean;
  private opening = false;
  // The last token sent.
  private sent?: string;
  private online = () => this.connect();

  constructor(url: string, options: HeraldOptions = {}) {
    this.url = url;
    this.o = options;
    this.last = options.offset;
    const WS = options.WebSocket || (globalThis as any).WebSocket;
    if (!WS) {
      throw new Error(
        'herald-client: no WebSocket here; pass options.WebSocket (the ws package on Node < 22)',
      );
    }
    if (options.format == 'msgpack' && !options.msgpack) {
      throw new Error(
        "herald-client: format 'msgpack' needs options.msgpack (herald-client/msgpack)",
      );
    }
    this.WS = WS;
    this.later(0);
  }

  /** 'connecting', 'connected' (open, and authenticated if a token was sent), 'disconnected'. */
  get state(): State {
    return this.s;
  }

  /** The offset of the last notification delivered (or of the last `subscribed` answer). */
  get lastOffset(): string | undefined {
    return this.last;
  }

  /** `recovered` of the last `subscribed` answer. */
  get recovered(): boolean | undefined {
    return this.rec;
  }

  /** The user ids subscribed to (and resubscribed on every reconnect). */
  get userIds(): string[] {
    return [...this.users];
  }

  /** Adds `fn` for `event`; returns a function that removes it. */
  on<E extends keyof Events>(event: E, fn: Events[E]): () => void {
    (this.handlers[event] ||= new Set()).add(fn);
    return () => this.off(event, fn);
  }

  off<E extends keyof Events>(event: E, fn: Events[E]): void {
    this.handlers[event]?.delete(fn);
  }

  /** Subscribes to `userId` now if connected, and on every reconnect. */
  subscribe(userId: string | number): void {
    const id = String(userId);
    if (this.users.has(id)) return;
    this.users.add(id);
    // No offset: a replay for this user alone could repeat offsets already delivered for others.
    if (this.s == 'connected') this.send('subscribe', { userIds: [id] });
  }

  unsubscribe(userId: string | number): void {
    const id = String(userId);
    if (this.users.delete(id) && this.s == 'connected') this.send('unsubscribe', id);
  }

  /**
   * Reconnects now if waiting to (what the browser's `online` event does), or reopens a closed
   * client; does nothing while connecting or connected.
   */
  connect(): void {
    this.closed = false;
    clearTimeout(this.timer);
    this.open();
  }

  /** Closes the connection (code 1000) for good; `connect()` would open it again. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.refreshTimer);
    (globalThis as any).removeEventListener?.('online', this.online);
    const ws = this.ws;
    this.ws = undefined;
    ws?.close(1000);
    this.setState('disconnected');
  }

  private emit<E extends keyof Events>(event: E, ...args: Parameters<Events[E]>): void {
    this.handlers[event]?.forEach((fn) => fn(...args));
  }

  private setState(s: State): void {
    if (this.s != s) this.emit('state', (this.s = s));
  }

  private send(event: string, data: unknown): void {
    const m = { event, data };
    this.ws?.send(
      this.o.msgpack && this.o.format == 'msgpack' ? this.o.msgpack.encode(m) : JSON.stringify(m),
    );
  }

  private async token(): Promise<string | undefined> {
    const t = this.o.token;
    return typeof t == 'function' ? await t() : t;
  }

  private async open(): Promise<void> {
    if (this.closed || this.ws || this.opening) return;
    (globalThis as any).addEventListener?.('online', this.online);
    this.setState('connecting');
    let token: string | undefined;
    this.opening = true;
    try {
      token = await this.token();
    } catch (e) {
      this.emit('error', { message: 'token: ' + ((e as Error)?.message ?? e) });
      return this.retry();
    } finally {
      this.opening = false;
    }
    if (this.closed) return;
    const msgpack = this.o.format == 'msgpack';
    // Resuming from an offset: herald holds the socket's broadcasts until the subscribe, so
    // that what was missed comes first however late the subscribe is.
    const url = this.last && this.users.size ? withResume(this.url) : this.url;
    const ws = (this.ws = new this.WS(url, msgpack ? ['herald.msgpack'] : undefined));
    if (msgpack) ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      if (token) this.send('auth', (this.sent = token));
      else {
        this.setState('connected');
      }
      // herald takes a subscribe right behind the auth, in the same flight.
      this.resubscribe();
    };
    ws.onmessage = (e: MessageEvent) => {
      if (this.ws != ws) return;
      let m: Message;
      try {
        m =
          typeof e.data == 'string'
            ? JSON.parse(e.data)
            : (this.o.msgpack!.decode(new Uint8Array(e.data)) as Message);
      } catch {
        return;
      }
      this.handle(m);
    };
    ws.onclose = (e: CloseEvent) => {
      if (this.ws != ws) return;
      this.ws = undefined;
      clearTimeout(this.refreshTimer);
      this.closedWith(e.code, e.reason);
    };
    ws.onerror = () => {};
  }

  private resubscribe(): void {
    if (this.users.size) {
      const data: { userIds: string[]; offset?: string } = { userIds: [...this.users] };
      if (this.last) data.offset = this.last;
      this.send('subscribe', data);
    } else if (this.s == 'connected') {
      this.attempt = 0;
    }
  }

  private handle(m: Message): void {
    const d = m.data;
    switch (m.event) {
      case 'notification': {
        const offset = typeof m.offset == 'string' ? m.offset : undefined;
        if (offset) {
          if (seen(this.last, offset)) return;
          this.last = offset;
        }
        this.emit('notification', d, { offset });
        break;
      }
      case 'subscribed': {
        const offset = d?.offset;
        // A first start, or a fresh one (nothing recovered: out of the window, another epoch).
        // A recovered answer names the log's head, and the replay that follows comes from
        // before it: the last offset stays until the replay moves it on.
        if (parseOffset(offset) && (d.recovered === false || !this.last)) this.last = offset;
        if ('recovered' in d) this.rec = d.recovered;
        this.attempt = 0;
        this.setState('connected');
        this.emit('subscribed', {
          userIds: d.userIds || [d.userId],
          socketId: d.socketId,
          offset,
          recovered: d.recovered,
        });
        break;
      }
      case 'authenticated':
        this.setState('connected');
        if (!this.users.size) this.attempt = 0;
        // Refreshed only once accepted: a refused token gets a new one on the reconnect.
        this.scheduleRefresh(typeof d?.exp == 'number' ? d.exp : jwtExp(this.sent!));
        break;
      case 'error':
        this.emit('error', { message: String(d?.message ?? d) });
    }
  }

  // Sends a fresh token before `exp` (seconds) less `refreshBefore`, or halfway to it if sooner.
  private scheduleRefresh(exp: number | undefined): void {
    clearTimeout(this.refreshTimer);
    if (typeof this.o.token != 'function' || typeof exp != 'number') return;
    const left = exp * 1000 - Date.now();
    const wait = Math.max(left - (this.o.refreshBefore ?? 60_000), left / 2, 0);
    const ws = this.ws;
    this.refreshTimer = setTimeout(
      async () => {
        try {
          const token = await this.token();
          if (token && this.ws == ws) this.send('auth', (this.sent = token));
        } catch (e) {
          this.emit('error', { message: 'token: ' + ((e as Error)?.message ?? e) });
        }
      },
      Math.min(wait, MAX_TIMEOUT),
    );
  }

  private closedWith(code: number, reason: string): void {
    if (this.closed) return;
    this.setState('disconnected');
    if (code == 4001 || code == 4003) {
      this.emit('error', {
        message: reason || (code == 4001 ? 'unauthorized' : 'token expired'),
        code,
      });
      // A static token would be refused again: stop rather than loop.
      if (typeof this.o.token != 'function') return this.close();
    }
    if (code == 1012) {
      // herald is restarting: the first attempt goes at once.
      this.attempt = 1;
      return this.later(0);
    }
    this.retry(code == 1008 ? (this.o.policyDelay ?? 10_000) : 0);
  }

  private retry(floor = 0): void {
    if (this.closed) return;
    this.setState('disconnected');
    const delay = backoffDelay(
      this.attempt++,
      { min: this.o.minDelay ?? 500, max: this.o.maxDelay ?? 30_000, factor: this.o.factor ?? 2 },
      floor,
    );
    this.later(delay);
  }

  private later(delay: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(), delay);
  }
}
