/**
 * The browser session: the refresh token lives only in the HttpOnly cookie the server
 * sets (`?session=cookie`), never in script reach; the access token lives here, in
 * memory. It is refreshed a minute before it expires, or once when a request answers 401,
 * and one refresh runs at a time: concurrent 401s in a tab share one refresh, and tabs
 * take turns through a Web Lock (a refresh token works once: two tabs presenting the same
 * cookie at once would look like theft and end the session). A tab that refreshed tells
 * the others the new access token over a BroadcastChannel, so they need not refresh too;
 * signing out in one tab signs out every tab.
 */

export interface AccessToken {
  token: string;
  /** Epoch milliseconds at which the server stops accepting it. */
  expiresAt: number;
}

/** What a refresh by the cookie gives: a new access token, or null (no session). */
export type Refresher = () => Promise<{ access_token: string; expires_in: number } | null>;

export type SessionMessage =
  | { type: 'token'; token: string; expiresAt: number }
  | { type: 'signed-out' };

export interface SessionChannel {
  post(message: SessionMessage): void;
  listen(handler: (message: SessionMessage) => void): void;
  close(): void;
}

export interface SessionOptions {
  refresher: Refresher;
  /** Runs `task` holding the cross-tab refresh lock (default: no other tab). */
  lock?: <T>(task: () => Promise<T>) => Promise<T>;
  channel?: SessionChannel;
  now?: () => number;
  setTimer?: (run: () => void, ms: number) => unknown;
  clearTimer?: (timer: unknown) => void;
  /** Refresh this long before expiry (ms). */
  leewayMs?: number;
}

const LOCK_NAME = 'ocupredict-refresh';
const CHANNEL_NAME = 'ocupredict-session';

/** The Web Locks API where the browser has it, else a lock for this tab only. */
export function browserLock(): <T>(task: () => Promise<T>) => Promise<T> {
  const locks = typeof navigator !== 'undefined' ? navigator.locks : undefined;
  if (locks?.request) {
    return <T>(task: () => Promise<T>) => locks.request(LOCK_NAME, task) as Promise<T>;
  }
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(task: () => Promise<T>) => {
    const run = tail.then(task, task);
    tail = run.catch(() => undefined);
    return run;
  };
}

export function browserChannel(): SessionChannel | undefined {
  if (typeof BroadcastChannel === 'undefined') {
    return undefined;
  }
  const channel = new BroadcastChannel(CHANNEL_NAME);
  return {
    post: (message) => channel.postMessage(message),
    listen: (handler) => {
      channel.onmessage = (event: MessageEvent<SessionMessage>) => handler(event.data);
    },
    close: () => channel.close(),
  };
}

export class Session {
  private access: AccessToken | undefined;
  private inFlight: Promise<boolean> | undefined;
  private timer: unknown;
  private readonly listeners = new Set<() => void>();
  private readonly now: () => number;
  private readonly lock: <T>(task: () => Promise<T>) => Promise<T>;
  private readonly leewayMs: number;

  constructor(private readonly options: SessionOptions) {
    this.now = options.now ?? Date.now;
    this.lock = options.lock ?? ((task) => task());
    this.leewayMs = options.leewayMs ?? 60_000;
    options.channel?.listen((message) => this.onMessage(message));
  }

  /** The current access token, if signed in. */
  get token(): string | undefined {
    return this.access?.token;
  }

  get signedIn(): boolean {
    return this.access !== undefined;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Adopt a token from a sign-in (login or verify in cookie mode). */
  start(accessToken: string, expiresIn: number): void {
    this.adopt({ token: accessToken, expiresAt: this.now() + expiresIn * 1000 }, true);
  }

  /** Forget the session here and in every other tab. */
  end(): void {
    this.options.channel?.post({ type: 'signed-out' });
    this.drop();
  }

  /**
   * Trade the cookie for a new access token; one at a time. `stale` is the token a
   * request was sent with: when another refresh (here or in another tab) has already
   * replaced it, that one is used instead of refreshing again.
   */
  refresh(stale?: string): Promise<boolean> {
    if (stale !== undefined && this.access && this.access.token !== stale) {
      return Promise.resolve(true);
    }
    this.inFlight ??= this.lock(async () => {
      // While waiting for the lock another tab may have refreshed and told us.
      if (stale !== undefined && this.access && this.access.token !== stale) {
        return true;
      }
      if (stale === undefined && this.access && this.access.expiresAt - this.now() > 2 * this.leewayMs) {
        return true;
      }
      const pair = await this.options.refresher();
      if (!pair) {
        this.end();
        return false;
      }
      this.adopt({ token: pair.access_token, expiresAt: this.now() + pair.expires_in * 1000 }, true);
      return true;
    }).finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  /**
   * fetch with the session: a request sent with the access token that answers 401 is
   * sent again once, after one (shared) refresh.
   */
  wrap(baseFetch: (request: Request) => Promise<Response>): (request: Request) => Promise<Response> {
    return async (request: Request) => {
      const sent = request.headers.get('Authorization');
      if (!sent?.startsWith('Bearer ')) {
        return baseFetch(request);
      }
      const retry = request.clone();
      const response = await baseFetch(request);
      if (response.status !== 401) {
        return response;
      }
      const ok = await this.refresh(sent.slice('Bearer '.length));
      if (!ok || !this.access) {
        return response;
      }
      retry.headers.set('Authorization', `Bearer ${this.access.token}`);
      return baseFetch(retry);
    };
  }

  dispose(): void {
    this.cancelTimer();
    this.options.channel?.close();
  }

  private onMessage(message: SessionMessage): void {
    if (message.type === 'signed-out') {
      this.drop();
    } else if (!this.access || message.expiresAt > this.access.expiresAt) {
      this.adopt({ token: message.token, expiresAt: message.expiresAt }, false);
    }
  }

  private adopt(access: AccessToken, broadcast: boolean): void {
    this.access = access;
    if (broadcast) {
      this.options.channel?.post({ type: 'token', ...access });
    }
    this.schedule();
    this.emit();
  }

  private drop(): void {
    const had = this.access !== undefined;
    this.access = undefined;
    this.cancelTimer();
    if (had) {
      this.emit();
    }
  }

  private schedule(): void {
    this.cancelTimer();
    if (!this.access || !this.options.setTimer) {
      return;
    }
    const due = Math.max(1_000, this.access.expiresAt - this.now() - this.leewayMs);
    this.timer = this.options.setTimer(() => {
      void this.refresh();
    }, due);
  }

  private cancelTimer(): void {
    if (this.timer !== undefined) {
      this.options.clearTimer?.(this.timer);
      this.timer = undefined;
    }
  }

  private emit(): void {
    for (const listener of this.listeners) {
      listener();
    }
  }
}
