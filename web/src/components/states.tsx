import { Alert, Box, Button, CircularProgress, Typography } from '@mui/material';
import type { ReactNode } from 'react';

import { errorMessage } from '../api/errors';
import { useI18n } from '../i18n/i18n';

export function Loading({ label }: { label?: string }) {
  const { m } = useI18n();
  return (
    <Box role="status" aria-live="polite" sx={{ display: 'flex', alignItems: 'center', gap: 2, py: 4 }}>
      <CircularProgress size={24} aria-hidden />
      <Typography>{label ?? m.common.loading}</Typography>
    </Box>
  );
}

export function ErrorState({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  const { m, lang } = useI18n();
  return (
    <Alert
      severity="error"
      role="alert"
      action={
        onRetry ? (
          <Button color="inherit" size="small" onClick={onRetry}>
            {m.common.retry}
          </Button>
        ) : undefined
      }
    >
      {errorMessage(error, lang)}
    </Alert>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return (
    <Typography sx={{ py: 4, color: 'text.secondary' }} role="status">
      {children}
    </Typography>
  );
}

export function FormError({ error }: { error: unknown }) {
  const { lang } = useI18n();
  if (!error) {
    return null;
  }
  return (
    <Alert severity="error" role="alert" sx={{ mt: 2 }}>
      {errorMessage(error, lang)}
    </Alert>
  );
}
