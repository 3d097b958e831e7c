import { describe, expect, it, vi } from 'vitest';

import { Session } from './session';
import type { SessionChannel, SessionMessage } from './session';

/** A server that accepts only its current access token and counts refreshes. */
function fakeServer() {
  let current = 'token-0';
  let refreshes = 0;
  return {
    get refreshes() {
      return refreshes;
    },
    expire() {
      current = `expired-${current}`;
    },
    refresher: vi.fn(async () => {
      refreshes += 1;
      await new Promise((resolve) => setTimeout(resolve, 5));
      current = `token-${refreshes}`;
      return { access_token: current, expires_in: 900 };
    }),
    fetch: async (request: Request) =>
      new Response(null, { status: request.headers.get('Authorization') === `Bearer ${current}` ? 200 : 401 }),
  };
}

function authed(token: string | undefined): Request {
  return new Request('http://app.test/api/v1/history', { headers: { Authorization: `Bearer ${token}` } });
}

/** Two tabs' channels joined, as a BroadcastChannel joins tabs of one origin. */
function channels(): [SessionChannel, SessionChannel] {
  const handlers: ((m: SessionMessage) => void)[] = [];
  const make = (index: number): SessionChannel => ({
    post: (message) => handlers.forEach((h, i) => i !== index && h(message)),
    listen: (handler) => {
      handlers[index] = handler;
    },
    close: () => undefined,
  });
  return [make(0), make(1)];
}

/** One lock for both tabs, like navigator.locks. */
function sharedLock() {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(task: () => Promise<T>) => {
    const run = tail.then(task, task);
    tail = run.catch(() => undefined);
    return run;
  };
}

describe('Session', () => {
  it('refreshes once for many concurrent 401s and retries each request once', async () => {
    const server = fakeServer();
    const session = new Session({ refresher: server.refresher });
    session.start('token-0', 900);
    server.expire();
    const send = session.wrap(server.fetch);
    const responses = await Promise.all(Array.from({ length: 8 }, () => send(authed(session.token))));
    expect(responses.map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(server.refreshes).toBe(1);
    expect(session.token).toBe('token-1');
  });

  it('does not refresh for requests without a bearer token or that succeed', async () => {
    const server = fakeServer();
    const session = new Session({ refresher: server.refresher });
    session.start('token-0', 900);
    const send = session.wrap(server.fetch);
    expect((await send(authed('token-0'))).status).toBe(200);
    expect((await send(new Request('http://app.test/api/v1/auth/login'))).status).toBe(401);
    expect(server.refreshes).toBe(0);
  });

  it('gives up after one refresh that fails, and signs out', async () => {
    const session = new Session({ refresher: async () => null });
    session.start('token-0', 900);
    const listener = vi.fn();
    session.subscribe(listener);
    const send = session.wrap(async () => new Response(null, { status: 401 }));
    const response = await send(authed('token-0'));
    expect(response.status).toBe(401);
    expect(session.signedIn).toBe(false);
    expect(listener).toHaveBeenCalled();
  });

  it('a request sent with an old token after a refresh just retries with the new one', async () => {
    const server = fakeServer();
    const session = new Session({ refresher: server.refresher });
    session.start('token-0', 900);
    server.expire();
    const send = session.wrap(server.fetch);
    await send(authed('token-0'));
    expect(server.refreshes).toBe(1);
    expect((await send(authed('token-0'))).status).toBe(200); // stale token: no new refresh
    expect(server.refreshes).toBe(1);
  });

  it('refreshes before expiry on a timer', async () => {
    const server = fakeServer();
    const timers: { run: () => void; ms: number }[] = [];
    let now = 1_000_000;
    const session = new Session({
      refresher: server.refresher,
      now: () => now,
      setTimer: (run, ms) => timers.push({ run, ms }),
      clearTimer: () => undefined,
      leewayMs: 60_000,
    });
    session.start('token-0', 900);
    expect(timers.at(-1)?.ms).toBe(840_000);
    now += 840_000;
    timers.at(-1)?.run();
    await vi.waitFor(() => expect(session.token).toBe('token-1'));
    expect(server.refreshes).toBe(1);
  });

  it('two tabs with concurrent 401s refresh once between them', async () => {
    const server = fakeServer();
    const lock = sharedLock();
    const [a, b] = channels();
    const tabA = new Session({ refresher: server.refresher, lock, channel: a });
    const tabB = new Session({ refresher: server.refresher, lock, channel: b });
    tabA.start('token-0', 900); // broadcast: tab B adopts it
    expect(tabB.token).toBe('token-0');
    server.expire();
    const [ra, rb] = await Promise.all([
      tabA.wrap(server.fetch)(authed('token-0')),
      tabB.wrap(server.fetch)(authed('token-0')),
    ]);
    expect([ra.status, rb.status]).toEqual([200, 200]);
    expect(server.refreshes).toBe(1);
    expect(tabA.token).toBe(tabB.token);
  });

  it('signing out in one tab signs out the others', () => {
    const [a, b] = channels();
    const tabA = new Session({ refresher: async () => null, channel: a });
    const tabB = new Session({ refresher: async () => null, channel: b });
    tabA.start('token-0', 900);
    expect(tabB.signedIn).toBe(true);
    tabA.end();
    expect(tabB.signedIn).toBe(false);
  });
});
