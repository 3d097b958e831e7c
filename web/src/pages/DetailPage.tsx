/** One record of the history: the evaluation, feedback editing and delete. */
import { History } from '@ocupredict/client';
import { Alert, Box, Button, Dialog, DialogActions, DialogContent, DialogContentText, DialogTitle, Link, Stack, Typography } from '@mui/material';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { Link as RouterLink, useNavigate, useParams } from 'react-router';

import { isCode, unwrap } from '../api/errors';
import { ResultView } from '../components/ResultView';
import { ErrorState, FormError, Loading } from '../components/states';
import { useI18n } from '../i18n/i18n';

export function DetailPage() {
  const { m, f } = useI18n();
  const { id: raw } = useParams();
  const id = Number(raw);
  const valid = Number.isInteger(id) && id >= 1;
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const [confirming, setConfirming] = useState(false);
  const key = ['history', 'detail', id];
  const detail = useQuery({
    queryKey: key,
    queryFn: () => unwrap(History.read({ path: { id } })),
    enabled: valid,
    retry: (count, error) => !isCode(error, 'NOT_FOUND') && count < 2,
    // Fetched again before the signed image URL expires.
    refetchInterval: (query) => {
      const expires = query.state.data ? Date.parse(query.state.data.image_url_expires_at) : 0;
      return expires ? Math.max(10_000, expires - Date.now() - 30_000) : false;
    },
  });
  const remove = useMutation({
    mutationFn: () => unwrap(History.delete({ path: { id } })),
    onSuccess: () => {
      setConfirming(false);
      queryClient.removeQueries({ queryKey: key });
      void queryClient.invalidateQueries({ queryKey: ['history'] });
      void queryClient.invalidateQueries({ queryKey: ['stats'] });
      navigate('/history', { replace: true, state: { deleted: id } });
    },
  });

  if (!valid || isCode(detail.error, 'NOT_FOUND')) {
    return (
      <Box data-testid="not-found">
        <Typography variant="h4" component="h1" gutterBottom>
          {m.common.notFound}
        </Typography>
        <Typography sx={{ mb: 2 }}>{m.common.notFoundText}</Typography>
        <Link component={RouterLink} to="/history">
          {m.common.backToHistory}
        </Link>
      </Box>
    );
  }
  return (
    <Stack spacing={2}>
      <Box>
        <Link component={RouterLink} to="/history">
          ← {m.common.backToHistory}
        </Link>
      </Box>
      <Typography variant="h4" component="h1">
        {f(m.history.detail, { id })}
      </Typography>
      {detail.isPending && <Loading />}
      {detail.isError && <ErrorState error={detail.error} onRetry={() => void detail.refetch()} />}
      {detail.data && (
        <>
          <ResultView
            prediction={detail.data}
            onChange={(p) => queryClient.setQueryData(key, p)}
            onExpired={() => void detail.refetch()}
          />
          <Box>
            <Button color="error" variant="outlined" onClick={() => setConfirming(true)}>
              {m.common.delete}
            </Button>
          </Box>
        </>
      )}
      <Dialog open={confirming} onClose={() => setConfirming(false)} aria-labelledby="delete-title">
        <DialogTitle id="delete-title">{m.common.delete}</DialogTitle>
        <DialogContent>
          <DialogContentText>{m.history.deleteConfirm}</DialogContentText>
          <FormError error={remove.error} />
        </DialogContent>
        <DialogActions>
          <Button onClick={() => setConfirming(false)} autoFocus>
            {m.common.cancel}
          </Button>
          <Button color="error" variant="contained" onClick={() => remove.mutate()} disabled={remove.isPending}>
            {m.common.delete}
          </Button>
        </DialogActions>
      </Dialog>
      {remove.isSuccess && <Alert severity="success">{m.history.deleted}</Alert>}
    </Stack>
  );
}
