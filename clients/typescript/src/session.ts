/**
 * Base URL and bearer tokens for the generated client, with the refresh handled once:
 * a bearer-authorized request that answers 401 is retried once after trading the
 * refresh token for a new pair (POST /auth/refresh). Concurrent 401s share one refresh,
 * since a refresh token works once and presenting a spent one ends the session.
 */
import { client } from './client/client.gen.js';
import { Auth } from './client/sdk.gen.js';
import type { TokenPair } from './client/types.gen.js';

/** Where the token pair lives (memory, sessionStorage, ...); `set(undefined)` = logged out. */
export interface TokenStore {
  get(): TokenPair | undefined;
  set(tokens: TokenPair | undefined): void;
}

export interface ConfigureOptions {
  /** The server, e.g. https://ocupredict.example.org (the paths carry /api/v1). */
  baseUrl: string;
  /** Enables the bearer token and the refresh on 401. */
  tokens?: TokenStore;
  /** The fetch to use (default: globalThis.fetch). */
  fetch?: typeof globalThis.fetch;
}

/** A token store in memory. */
export function memoryTokens(initial?: TokenPair): TokenStore {
  let tokens = initial;
  return {
    get: () => tokens,
    set: (next) => {
      tokens = next;
    },
  };
}

/** Point the client at a server and, with `tokens`, keep its session alive. */
export function configure(options: ConfigureOptions): void {
  const { baseUrl, tokens } = options;
  const baseFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  let refreshing: Promise<boolean> | undefined;

  const refresh = (): Promise<boolean> => {
    refreshing ??= (async () => {
      const current = tokens?.get();
      if (!current?.refresh_token) {
        return false; // none, or a cookie-mode pair (the web app refreshes by its cookie)
      }
      const { data } = await Auth.refresh({ body: { refresh_token: current.refresh_token } });
      tokens?.set(data); // undefined when the session is over: the caller logs in again
      return data !== undefined;
    })().finally(() => {
      refreshing = undefined;
    });
    return refreshing;
  };

  const refreshingFetch = async (
    input: RequestInfo | URL,
    init?: RequestInit,
  ): Promise<Response> => {
    const request = new Request(input, init);
    const sent = request.headers.get('Authorization');
    if (!tokens || !sent) {
      return baseFetch(request);
    }
    const retry = request.clone();
    const response = await baseFetch(request);
    if (response.status !== 401) {
      return response;
    }
    // Another request may have refreshed while this one was in flight: then just retry.
    const current = tokens.get();
    const refreshedMeanwhile = current !== undefined && `Bearer ${current.access_token}` !== sent;
    if (!refreshedMeanwhile && !(await refresh())) {
      return response;
    }
    const next = tokens.get();
    if (!next) {
      return response;
    }
    retry.headers.set('Authorization', `Bearer ${next.access_token}`);
    return baseFetch(retry);
  };

  client.setConfig({
    baseUrl: baseUrl.replace(/\/+$/, ''),
    auth: () => tokens?.get()?.access_token,
    fetch: refreshingFetch,
  });
}
