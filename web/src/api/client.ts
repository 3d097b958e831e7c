/**
 * The generated client (@ocupredict/client), pointed at this origin with the session's
 * bearer token and 401 handling. Every API call of the app goes through it.
 */
import { Auth, client } from '@ocupredict/client';

import { Session, browserChannel, browserLock } from './session';

export const WEB_CLIENT_HEADER = { 'X-OcuPredict-Client': 'web' } as const;

let language = 'es';

/** The language of the server's error details and labels (Accept-Language). */
export function setApiLanguage(lang: string): void {
  language = lang;
}

const plainFetch = (request: Request): Promise<Response> => {
  request.headers.set('Accept-Language', language);
  return globalThis.fetch(request);
};

/** Trade the HttpOnly cookie for a new access token (null: no session). */
async function refreshByCookie(): Promise<{ access_token: string; expires_in: number } | null> {
  try {
    // keepalive: a reload or a closed tab does not cancel a refresh in flight. The server has
    // spent the old token by then; a cancelled one would leave the browser holding it, and
    // presenting a spent token ends the whole session (reuse detection).
    const { data } = await Auth.refresh({ headers: WEB_CLIENT_HEADER, keepalive: true });
    return data ? { access_token: data.access_token, expires_in: data.expires_in } : null;
  } catch {
    return null; // offline: treated as signed out; the sign-in page says so
  }
}

export const session = new Session({
  refresher: refreshByCookie,
  lock: browserLock(),
  channel: browserChannel(),
  setTimer: (run, ms) => globalThis.setTimeout(run, ms),
  clearTimer: (timer) => globalThis.clearTimeout(timer as ReturnType<typeof setTimeout>),
});

const sessionFetch = session.wrap(plainFetch);

client.setConfig({
  baseUrl: globalThis.location?.origin ?? '',
  auth: () => session.token,
  fetch: (input: RequestInfo | URL, init?: RequestInit) => sessionFetch(new Request(input, init)),
});

/** Sign out here and in every tab: the server ends the session and clears the cookie. */
export async function signOut(): Promise<void> {
  try {
    await Auth.logout({ headers: WEB_CLIENT_HEADER });
  } finally {
    session.end();
  }
}
