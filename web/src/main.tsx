import { StrictMode, startTransition } from 'react';
import { createRoot } from 'react-dom/client';

import './api/client';
import { App } from './App';

// The chunk of the screen the address names starts loading now, beside the session's
// restore (refresh, then /auth/me), not after it: the lazy route finds it loaded or on its way.
const ROUTE_CHUNKS: [RegExp, () => Promise<unknown>][] = [
  [/^\/(evaluate\/?)?$/, () => import('./pages/EvaluatePage')],
  [/^\/history\/?$/, () => import('./pages/HistoryPage')],
  [/^\/history\/[^/]+\/?$/, () => import('./pages/DetailPage')],
  [/^\/dashboard\/?$/, () => import('./pages/DashboardPage')],
  [/^\/profile\/?$/, () => import('./pages/ProfilePage')],
];
const preload = ROUTE_CHUNKS.find(([path]) => path.test(globalThis.location.pathname));
void preload?.[1]().catch(() => undefined); // a failed load shows where the route renders

const root = document.getElementById('root');
if (root) {
  // A transition: React renders the first screen in slices of a few milliseconds, yielding
  // to the browser between them, instead of one long task that blocks a slow phone's main
  // thread (Lighthouse's Total Blocking Time).
  startTransition(() => {
    createRoot(root).render(
      <StrictMode>
        <App />
      </StrictMode>,
    );
  });
}
