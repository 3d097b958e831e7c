/**
 * Who is signed in. On load the session is restored from the HttpOnly cookie (a refresh);
 * the user comes from GET /auth/me. Signing out anywhere (this tab, another tab, a refused
 * refresh) returns every screen to the sign-in page.
 */
import { Auth } from '@ocupredict/client';
import type { User } from '@ocupredict/client';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import {
  createContext,
  startTransition,
  useCallback,
  useContext,
  useDeferredValue,
  useEffect,
  useMemo,
  useState,
  useSyncExternalStore,
} from 'react';
import type { ReactNode } from 'react';

import { WEB_CLIENT_HEADER, session, signOut } from './api/client';
import { unwrap } from './api/errors';
import { useI18n } from './i18n/i18n';

type Status = 'restoring' | 'signed-in' | 'signed-out';

interface AuthState {
  status: Status;
  user: User | undefined;
  /** Sign in with a TokenPair of the cookie mode (login or verify). */
  started: (pair: { access_token: string; expires_in: number }) => void;
  signOut: () => Promise<void>;
}

const AuthContext = createContext<AuthState | undefined>(undefined);

export const ME_KEY = ['me'] as const;

export function AuthProvider({ children }: { children: ReactNode }) {
  const queryClient = useQueryClient();
  const { setLang } = useI18n();
  const [restored, setRestored] = useState(false);
  const signedIn = useSyncExternalStore(
    (listener) => session.subscribe(listener),
    () => session.signedIn,
  );

  useEffect(() => {
    let live = true;
    void session.refresh().finally(() => {
      // a transition: the screen that follows (often the sign-in form) renders in slices
      if (live) startTransition(() => setRestored(true));
    });
    return () => {
      live = false;
    };
  }, []);

  useEffect(() => {
    if (!signedIn) {
      queryClient.clear();
    }
  }, [signedIn, queryClient]);

  const me = useQuery({
    queryKey: ME_KEY,
    queryFn: () => unwrap(Auth.readMe()),
    enabled: signedIn,
    staleTime: 5 * 60_000,
  });

  const user = me.data;
  useEffect(() => {
    if (user) setLang(user.locale);
  }, [user, setLang]);

  const started = useCallback((pair: { access_token: string; expires_in: number }) => {
    session.start(pair.access_token, pair.expires_in);
  }, []);

  let status: Status = 'signed-out';
  if (signedIn) {
    status = user ? 'signed-in' : me.isError ? 'signed-out' : 'restoring';
  } else if (!restored) {
    status = 'restoring';
  }
  // The screens follow the session through a deferred value: the session and /auth/me come
  // from external stores, whose updates React renders in one long piece; deferred, the screen
  // that follows (a whole page after a restore or a sign-in) renders in slices.
  const shown = useDeferredValue(useMemo(() => ({ status, user }), [status, user]));
  const value = useMemo<AuthState>(
    () => ({ status: shown.status, user: shown.user, started, signOut }),
    [shown, started],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthState {
  const value = useContext(AuthContext);
  if (!value) {
    throw new Error('useAuth outside AuthProvider');
  }
  return value;
}

export { WEB_CLIENT_HEADER };
