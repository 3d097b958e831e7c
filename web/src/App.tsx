import { CssBaseline, ThemeProvider, createTheme } from '@mui/material';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { Suspense, lazy } from 'react';
import type { ReactNode } from 'react';
import { BrowserRouter, Navigate, Route, Routes, useLocation } from 'react-router';

import { isCode } from './api/errors';
import { AuthProvider, useAuth } from './auth';
import { Layout } from './components/Layout';
import { Loading } from './components/states';
import { I18nProvider, useI18n } from './i18n/i18n';
import { ForgotPage, RegisterPage, ResetPage, SignInPage, VerifyPage } from './pages/AuthPages';

// The signed-in screens load on demand: the sign-in page stays small.
const EvaluatePage = lazy(() => import('./pages/EvaluatePage').then((mod) => ({ default: mod.EvaluatePage })));
const HistoryPage = lazy(() => import('./pages/HistoryPage').then((mod) => ({ default: mod.HistoryPage })));
const DetailPage = lazy(() => import('./pages/DetailPage').then((mod) => ({ default: mod.DetailPage })));
const DashboardPage = lazy(() => import('./pages/DashboardPage'));
const ProfilePage = lazy(() => import('./pages/ProfilePage'));
// The admin console: lazy too, and only mounted for the admin role (AdminOnly).
const UsersPage = lazy(() => import('./admin/UsersPage'));
const ModelsPage = lazy(() => import('./admin/ModelsPage'));
const EvidencePage = lazy(() => import('./admin/EvidencePage'));
const AuditPage = lazy(() => import('./admin/AuditPage'));
const DatasetsPage = lazy(() => import('./admin/DatasetsPage'));
const TrainingPage = lazy(() => import('./admin/TrainingPage'));
const EvaluationPage = lazy(() => import('./admin/EvaluationPage'));
const AdminOnly = lazy(() => import('./admin/components').then((mod) => ({ default: mod.AdminOnly })));

const theme = createTheme({
  palette: {
    primary: { main: '#0b5394' },
    success: { main: '#2e7d32', dark: '#1b5e20' },
    warning: { main: '#b45309' },
  },
});

const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      retry: (count, error) => !isCode(error, 'NOT_FOUND') && !isCode(error, 'NOT_AUTHENTICATED') && count < 2,
      refetchOnWindowFocus: false,
    },
  },
});

function Private({ children }: { children: ReactNode }) {
  const { status } = useAuth();
  const location = useLocation();
  if (status === 'restoring') return <Loading />;
  if (status === 'signed-out') {
    return <Navigate to="/signin" replace state={{ from: location.pathname + location.search }} />;
  }
  return <Suspense fallback={<Loading />}>{children}</Suspense>;
}

function Public({ children }: { children: ReactNode }) {
  const { status } = useAuth();
  if (status === 'restoring') return <Loading />;
  if (status === 'signed-in') return <Navigate to="/evaluate" replace />;
  return <>{children}</>;
}

function NotFoundPage() {
  const { m } = useI18n();
  return (
    <div data-testid="not-found">
      <h1>{m.common.notFound}</h1>
      <p>{m.common.notFoundText}</p>
    </div>
  );
}

function AppRoutes() {
  return (
    <Layout>
      <Routes>
        <Route path="/" element={<Navigate to="/evaluate" replace />} />
        <Route path="/signin" element={<Public><SignInPage /></Public>} />
        <Route path="/register" element={<Public><RegisterPage /></Public>} />
        <Route path="/verify" element={<Public><VerifyPage /></Public>} />
        <Route path="/forgot" element={<Public><ForgotPage /></Public>} />
        <Route path="/reset" element={<Public><ResetPage /></Public>} />
        <Route path="/evaluate" element={<Private><EvaluatePage /></Private>} />
        <Route path="/history" element={<Private><HistoryPage /></Private>} />
        <Route path="/history/:id" element={<Private><DetailPage /></Private>} />
        <Route path="/dashboard" element={<Private><DashboardPage /></Private>} />
        <Route path="/profile" element={<Private><ProfilePage /></Private>} />
        <Route path="/admin" element={<Navigate to="/admin/users" replace />} />
        <Route path="/admin/users" element={<Private><AdminOnly><UsersPage /></AdminOnly></Private>} />
        <Route path="/admin/models" element={<Private><AdminOnly><ModelsPage /></AdminOnly></Private>} />
        <Route path="/admin/models/:version" element={<Private><AdminOnly><EvidencePage /></AdminOnly></Private>} />
        <Route path="/admin/models/:version/evaluation" element={<Private><AdminOnly><EvaluationPage /></AdminOnly></Private>} />
        <Route path="/admin/datasets" element={<Private><AdminOnly><DatasetsPage /></AdminOnly></Private>} />
        <Route path="/admin/training" element={<Private><AdminOnly><TrainingPage /></AdminOnly></Private>} />
        <Route path="/admin/audit" element={<Private><AdminOnly><AuditPage /></AdminOnly></Private>} />
        <Route path="/admin/*" element={<Private><AdminOnly><NotFoundPage /></AdminOnly></Private>} />
        <Route path="*" element={<NotFoundPage />} />
      </Routes>
    </Layout>
  );
}

export function App() {
  return (
    <ThemeProvider theme={theme}>
      <CssBaseline />
      <QueryClientProvider client={queryClient}>
        <I18nProvider>
          <AuthProvider>
            <BrowserRouter>
              <AppRoutes />
            </BrowserRouter>
          </AuthProvider>
        </I18nProvider>
      </QueryClientProvider>
    </ThemeProvider>
  );
}
