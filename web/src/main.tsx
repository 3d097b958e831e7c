import { StrictMode, startTransition } from 'react';
import { createRoot } from 'react-dom/client';

import './api/client';
import { App } from './App';

// The chunk of the screen the address names starts loading once the first frame (the header
// and a loading line) is painted, beside the session's restore (refresh, then /auth/me), not
// after it: the lazy route finds it loaded or on its way. Not before that paint: the first
// frame needs only this bundle, and the network is the slow phone's bottleneck.
const ROUTE_CHUNKS: [RegExp, () => Promise<unknown>][] = [
  [/^\/(evaluate\/?)?$/, () => import('./pages/EvaluatePage')],
  [/^\/history\/?$/, () => import('./pages/HistoryPage')],
  [/^\/history\/[^/]+\/?$/, () => import('./pages/DetailPage')],
  [/^\/dashboard\/?$/, () => import('./pages/DashboardPage')],
  [/^\/profile\/?$/, () => import('./pages/ProfilePage')],
];

function afterFirstPaint(run: () => void): void {
  let started = false;
  const once = () => {
    if (!started) {
      started = true;
      run();
    }
  };
  globalThis.setTimeout(once, 2000); // no paint timing (or a hidden tab): soon anyway
  try {
    const observer = new PerformanceObserver((list) => {
      if (list.getEntriesByName('first-contentful-paint').length > 0) {
        observer.disconnect();
        once();
      }
    });
    observer.observe({ type: 'paint', buffered: true });
  } catch {
    // no PerformanceObserver: the timer above
  }
}

const preload = ROUTE_CHUNKS.find(([path]) => path.test(globalThis.location.pathname));
if (preload) {
  afterFirstPaint(() => void preload[1]().catch(() => undefined)); // a failure shows where the route renders
}

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
