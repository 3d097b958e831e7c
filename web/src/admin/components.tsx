/** Pieces shared by the admin screens: the role gate, "not allowed", confirmations. */
import { Alert, Box, Button, Dialog, DialogActions, DialogContent, DialogContentText, DialogTitle, Typography } from '@mui/material';
import { useQueryClient } from '@tanstack/react-query';
import { useEffect, useId } from 'react';
import type { ReactNode } from 'react';

import { isCode } from '../api/errors';
import { ME_KEY, useAuth } from '../auth';
import { ErrorState, FormError } from '../components/states';
import { useI18n } from '../i18n/i18n';
import { useAdminMessages } from './messages';

export function NotAllowed() {
  const a = useAdminMessages();
  return (
    <Box data-testid="not-allowed" component="section" aria-labelledby="not-allowed-title">
      <Typography variant="h4" component="h1" id="not-allowed-title" gutterBottom>
        {a.notAllowed}
      </Typography>
      <Typography>{a.notAllowedText}</Typography>
    </Box>
  );
}

/** The admin screens only for the admin role: a doctor gets "not allowed" and the screen
 * (and so its requests) is never mounted. */
export function AdminOnly({ children }: { children: ReactNode }) {
  const { user } = useAuth();
  if (user?.role !== 'admin') return <NotAllowed />;
  return <>{children}</>;
}

/** An admin request's error: the API's 403 (the role was taken away meanwhile) is "not
 * allowed", and the account is read again so the menu follows; anything else as usual. */
export function AdminError({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  const queryClient = useQueryClient();
  const forbidden = isCode(error, 'FORBIDDEN');
  useEffect(() => {
    if (forbidden) void queryClient.invalidateQueries({ queryKey: ME_KEY });
  }, [forbidden, queryClient]);
  if (forbidden) return <NotAllowed />;
  return <ErrorState error={error} onRetry={onRetry} />;
}

/** A confirmation before a destructive action: what it does, what it replaces, whether it
 * can be undone; the action's error stays in the dialog. */
export function ConfirmDialog({
  open,
  title,
  children,
  confirmLabel,
  onConfirm,
  onClose,
  pending,
  error,
  danger = true,
  irreversible = false,
  extra,
}: {
  open: boolean;
  title: string;
  children: ReactNode;
  confirmLabel: string;
  onConfirm: () => void;
  onClose: () => void;
  pending?: boolean;
  error?: unknown;
  danger?: boolean;
  irreversible?: boolean;
  extra?: ReactNode;
}) {
  const a = useAdminMessages();
  const { m } = useI18n();
  const id = useId();
  return (
    <Dialog open={open} onClose={pending ? undefined : onClose} aria-labelledby={`${id}-title`} aria-describedby={`${id}-text`} data-testid="confirm-dialog">
      <DialogTitle id={`${id}-title`}>{title}</DialogTitle>
      <DialogContent>
        <DialogContentText id={`${id}-text`} component="div">
          {children}
        </DialogContentText>
        {irreversible && (
          <Alert severity="warning" sx={{ mt: 2 }}>
            {a.cannotUndo}
          </Alert>
        )}
        {extra}
        {error ? <ActionError error={error} /> : null}
      </DialogContent>
      <DialogActions>
        <Button onClick={onClose} autoFocus disabled={pending}>
          {m.common.cancel}
        </Button>
        <Button color={danger ? 'error' : 'primary'} variant="contained" onClick={onConfirm} disabled={pending} data-testid="confirm">
          {confirmLabel}
        </Button>
      </DialogActions>
    </Dialog>
  );
}

/** An action's error: LAST_ADMIN explained; 403 as "not allowed"; else the code's message. */
export function ActionError({ error }: { error: unknown }) {
  const a = useAdminMessages();
  if (isCode(error, 'LAST_ADMIN')) {
    return (
      <Alert severity="error" role="alert" sx={{ mt: 2 }} data-testid="last-admin">
        {a.users.lastAdmin}
      </Alert>
    );
  }
  return <FormError error={error} />;
}
