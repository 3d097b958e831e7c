/** Profile: name and language, password change, the account's own security activity. */
import { Auth } from '@ocupredict/client';
import type { AuditEvent } from '@ocupredict/client';
import { Alert, Box, Button, Card, CardContent, FormControl, InputLabel, MenuItem, Select, Stack, Table, TableBody, TableCell, TableHead, TableRow, TextField, Typography } from '@mui/material';
import { useInfiniteQuery, useMutation, useQueryClient } from '@tanstack/react-query';
import { useId, useState } from 'react';

import { unwrap } from '../api/errors';
import { ME_KEY, useAuth } from '../auth';
import { PasswordRules, passwordOk } from '../components/PasswordRules';
import { Empty, ErrorState, FormError, Loading } from '../components/states';
import { useI18n } from '../i18n/i18n';
import type { Lang } from '../i18n/messages';

function Details() {
  const { m, setLang } = useI18n();
  const { user } = useAuth();
  const queryClient = useQueryClient();
  const [name, setName] = useState(user?.name ?? '');
  const [locale, setLocale] = useState<Lang>(user?.locale ?? 'es');
  const id = useId();
  const save = useMutation({
    mutationFn: () => unwrap(Auth.updateMe({ body: { name: name.trim(), locale } })),
    onSuccess: (updated) => {
      queryClient.setQueryData(ME_KEY, updated);
      setLang(updated.locale);
      void queryClient.invalidateQueries({ predicate: (q) => q.queryKey[0] !== ME_KEY[0] });
    },
  });
  return (
    <Card variant="outlined" component="section" aria-labelledby={`${id}-title`}>
      <CardContent>
        <Typography variant="h6" component="h2" id={`${id}-title`} gutterBottom>
          {m.profile.details}
        </Typography>
        <Box component="form" onSubmit={(e) => { e.preventDefault(); save.mutate(); }} sx={{ display: 'grid', gap: 2, maxWidth: 420 }}>
          <TextField label={m.common.email} value={user?.email ?? ''} slotProps={{ htmlInput: { readOnly: true } }} />
          <TextField label={m.common.name} required value={name} onChange={(e) => setName(e.target.value)} slotProps={{ htmlInput: { maxLength: 100 } }} />
          <FormControl>
            <InputLabel id={`${id}-lang`}>{m.profile.language}</InputLabel>
            <Select labelId={`${id}-lang`} label={m.profile.language} value={locale} onChange={(e) => setLocale(e.target.value as Lang)}>
              <MenuItem value="es">{m.lang.es}</MenuItem>
              <MenuItem value="en">{m.lang.en}</MenuItem>
            </Select>
          </FormControl>
          <Box>
            <Button type="submit" variant="contained" disabled={save.isPending || !name.trim()}>
              {m.common.save}
            </Button>
          </Box>
          {save.isSuccess && <Alert severity="success">{m.common.saved}</Alert>}
          <FormError error={save.error} />
        </Box>
      </CardContent>
    </Card>
  );
}

function PasswordChange() {
  const { m } = useI18n();
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const id = useId();
  const change = useMutation({
    mutationFn: () => unwrap(Auth.changePassword({ body: { current_password: current, new_password: next } })),
    onSuccess: () => {
      setCurrent('');
      setNext('');
    },
  });
  return (
    <Card variant="outlined" component="section" aria-labelledby={`${id}-title`}>
      <CardContent>
        <Typography variant="h6" component="h2" id={`${id}-title`} gutterBottom>
          {m.profile.password}
        </Typography>
        <Box component="form" onSubmit={(e) => { e.preventDefault(); if (passwordOk(next)) change.mutate(); }} sx={{ display: 'grid', gap: 2, maxWidth: 420 }}>
          <TextField label={m.profile.current} type="password" autoComplete="current-password" required value={current} onChange={(e) => setCurrent(e.target.value)} />
          <TextField
            label={m.profile.newPassword}
            type="password"
            autoComplete="new-password"
            required
            value={next}
            onChange={(e) => setNext(e.target.value)}
            slotProps={{ htmlInput: { 'aria-describedby': 'password-rules' } }}
          />
          <PasswordRules password={next} />
          <Box>
            <Button type="submit" variant="contained" disabled={change.isPending || !passwordOk(next) || !current}>
              {m.profile.password}
            </Button>
          </Box>
          {change.isSuccess && <Alert severity="success">{m.profile.changed}</Alert>}
          <FormError error={change.error} />
        </Box>
      </CardContent>
    </Card>
  );
}

function Activity() {
  const { m, dateTime } = useI18n();
  const id = useId();
  const activity = useInfiniteQuery({
    queryKey: ['activity'],
    queryFn: ({ pageParam }) => unwrap(Auth.myActivity({ query: { limit: 20, ...(pageParam ? { cursor: pageParam } : {}) } })),
    initialPageParam: '',
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
  const items: AuditEvent[] = activity.data?.pages.flatMap((p) => p.items) ?? [];
  return (
    <Card variant="outlined" component="section" aria-labelledby={`${id}-title`}>
      <CardContent>
        <Typography variant="h6" component="h2" id={`${id}-title`} gutterBottom>
          {m.profile.activity}
        </Typography>
        {activity.isPending && <Loading />}
        {activity.isError && <ErrorState error={activity.error} onRetry={() => void activity.refetch()} />}
        {activity.data && items.length === 0 && <Empty>{m.profile.activityEmpty}</Empty>}
        {items.length > 0 && (
          <Box sx={{ overflowX: 'auto' }}>
            <Table size="small" aria-label={m.profile.activity} data-testid="activity">
              <TableHead>
                <TableRow>
                  <TableCell>{m.profile.when}</TableCell>
                  <TableCell>{m.profile.what}</TableCell>
                  <TableCell>{m.profile.ip}</TableCell>
                </TableRow>
              </TableHead>
              <TableBody>
                {items.map((event) => (
                  <TableRow key={event.id}>
                    <TableCell>{dateTime(event.at)}</TableCell>
                    <TableCell>{m.action[event.action] ?? event.action}</TableCell>
                    <TableCell>{event.ip ?? '–'}</TableCell>
                  </TableRow>
                ))}
              </TableBody>
            </Table>
          </Box>
        )}
        {activity.hasNextPage && (
          <Button sx={{ mt: 1 }} onClick={() => void activity.fetchNextPage()} disabled={activity.isFetchingNextPage}>
            {m.profile.more}
          </Button>
        )}
      </CardContent>
    </Card>
  );
}

export default function ProfilePage() {
  const { m } = useI18n();
  return (
    <Stack spacing={2}>
      <Typography variant="h4" component="h1">
        {m.profile.title}
      </Typography>
      <Details />
      <PasswordChange />
      <Activity />
    </Stack>
  );
}
