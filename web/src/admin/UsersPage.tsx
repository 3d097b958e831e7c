/** Users (admin): search and page; disable / enable; change role; last login. */
import { Admin } from '@ocupredict/client';
import type { AdminUser } from '@ocupredict/client';
import {
  Alert,
  Box,
  Button,
  Chip,
  Stack,
  TableCell,
  TablePagination,
  TableRow,
  Typography,
} from '@mui/material';
import { keepPreviousData, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useMemo, useState } from 'react';
import { useSearchParams } from 'react-router';

import { unwrap } from '../api/errors';
import { useAuth } from '../auth';
import { useI18n } from '../i18n/i18n';
import { TextFilter } from '../components/TextFilter';
import { otherRole, undoOf } from './actions';
import type { Undo } from './actions';
import { ActionError, ConfirmDialog } from './components';
import { USER_PAGE_SIZE, searchFromUserFilters, userFiltersFromSearch } from './filters';
import { useAdminMessages } from './messages';
import { DataTable, QueryStates } from './sections';

type Pending = { kind: 'disable'; user: AdminUser } | { kind: 'role'; user: AdminUser };

interface Notice {
  text: string;
  undo?: Undo;
  user?: AdminUser;
}

export default function UsersPage() {
  const a = useAdminMessages();
  const { m, f, dateTime } = useI18n();
  const { user: me } = useAuth();
  const queryClient = useQueryClient();
  const [params, setParams] = useSearchParams();
  const filters = useMemo(() => userFiltersFromSearch(params), [params]);
  const [pending, setPending] = useState<Pending | undefined>();
  const [notice, setNotice] = useState<Notice | undefined>();

  const list = useQuery({
    queryKey: ['admin', 'users', filters.q ?? '', filters.page],
    queryFn: () => unwrap(Admin.listUsers({ query: { page: filters.page, page_size: USER_PAGE_SIZE, ...(filters.q ? { q: filters.q } : {}) } })),
    placeholderData: keepPreviousData,
  });

  const roleName = (role: AdminUser['role']) => a.users.roles[role];

  const act = useMutation({
    mutationFn: async (action: { kind: 'disable' | 'enable' | 'role'; user: AdminUser; role?: AdminUser['role'] }) => {
      const path = { id: action.user.id };
      if (action.kind === 'disable') return unwrap(Admin.disableUser({ path }));
      if (action.kind === 'enable') return unwrap(Admin.enableUser({ path }));
      return unwrap(Admin.setRole({ path, body: { role: action.role ?? otherRole(action.user.role) } }));
    },
    onSuccess: (updated, action) => {
      setPending(undefined);
      void queryClient.invalidateQueries({ queryKey: ['admin', 'users'] });
      void queryClient.invalidateQueries({ queryKey: ['admin', 'audit'] });
      if (action.kind === 'disable') {
        setNotice({ text: f(a.users.disabledDone, { email: updated.email }), undo: undoOf('disable', { userId: updated.id }), user: updated });
      } else if (action.kind === 'enable') {
        setNotice({ text: f(a.users.enabledDone, { email: updated.email }) });
      } else {
        setNotice({
          text: f(a.users.roleDone, { email: updated.email, role: roleName(updated.role) }),
          undo: undoOf('role', { userId: updated.id, role: action.user.role }),
          user: updated,
        });
      }
    },
  });

  const undo = (u: Undo, user: AdminUser) => {
    setNotice(undefined);
    if (u.kind === 'enable') act.mutate({ kind: 'enable', user });
    else if (u.kind === 'role') act.mutate({ kind: 'role', user, role: u.role });
  };

  return (
    <Stack spacing={2} component="section" aria-labelledby="users-title">
      <Typography variant="h4" component="h1" id="users-title">
        {a.users.title}
      </Typography>
      <TextFilter
        type="search"
        label={a.users.search}
        value={filters.q ?? ''}
        max={254}
        testId="user-search"
        sx={{ minWidth: { xs: '100%', sm: 320 } }}
        onChange={(q) => setParams(searchFromUserFilters({ q: q.trim() || undefined, page: 1 }))}
      />
      {notice && (
        <Alert
          severity="success"
          data-testid="notice"
          onClose={() => setNotice(undefined)}
          action={
            notice.undo && notice.user ? (
              <Button color="inherit" size="small" onClick={() => notice.undo && notice.user && undo(notice.undo, notice.user)} data-testid="undo">
                {a.undo}
              </Button>
            ) : undefined
          }
        >
          {notice.text}
        </Alert>
      )}
      {!pending && act.error ? <ActionError error={act.error} /> : null}
      <QueryStates query={list} isEmpty={(page) => page.items.length === 0} empty={a.users.empty}>
        {(page) => (
          <DataTable
            framed
            label={a.users.table}
            testId="users-table"
            columns={[a.users.name, a.users.email, a.users.role, a.users.status, a.users.lastLogin, a.users.created, a.users.actions]}
            footer={
              <TablePagination
                component="div"
                count={page.total}
                page={filters.page - 1}
                rowsPerPage={USER_PAGE_SIZE}
                rowsPerPageOptions={[]}
                onPageChange={(_, next) => setParams(searchFromUserFilters({ ...filters, page: next + 1 }))}
                labelDisplayedRows={({ from, to, count }) => `${from}–${to} ${m.history.of} ${count}`}
              />
            }
          >
            {page.items.map((user) => (
              <TableRow key={user.id} data-testid="user-row" data-email={user.email} data-active={String(user.is_active)} data-role={user.role}>
                <TableCell>
                  {user.name} {user.id === me?.id ? a.users.you : ''}
                </TableCell>
                <TableCell sx={{ overflowWrap: 'anywhere' }}>{user.email}</TableCell>
                <TableCell>{roleName(user.role)}</TableCell>
                <TableCell>
                  <Chip
                    size="small"
                    variant="outlined"
                    color={user.is_active ? 'success' : 'default'}
                    label={`${user.is_active ? '●' : '○'} ${user.is_active ? a.users.active : a.users.disabled}${user.is_verified ? '' : ` · ${m.common.no} ${a.users.verified.toLowerCase()}`}`}
                  />
                </TableCell>
                <TableCell data-testid="last-login">{user.last_login_at ? dateTime(user.last_login_at) : a.users.never}</TableCell>
                <TableCell>{dateTime(user.created_at)}</TableCell>
                <TableCell>
                  <Box sx={{ display: 'flex', flexWrap: 'wrap', gap: 1 }}>
                    {user.is_active ? (
                      <Button size="small" color="error" variant="outlined" onClick={() => setPending({ kind: 'disable', user })} aria-label={`${a.users.disable}: ${user.email}`}>
                        {a.users.disable}
                      </Button>
                    ) : (
                      <Button size="small" variant="outlined" onClick={() => act.mutate({ kind: 'enable', user })} disabled={act.isPending} aria-label={`${a.users.enable}: ${user.email}`}>
                        {a.users.enable}
                      </Button>
                    )}
                    <Button size="small" variant="outlined" onClick={() => setPending({ kind: 'role', user })} aria-label={`${user.role === 'admin' ? a.users.makeDoctor : a.users.makeAdmin}: ${user.email}`}>
                      {user.role === 'admin' ? a.users.makeDoctor : a.users.makeAdmin}
                    </Button>
                  </Box>
                </TableCell>
              </TableRow>
            ))}
          </DataTable>
        )}
      </QueryStates>
      <ConfirmDialog
        open={pending !== undefined}
        title={pending?.kind === 'disable' ? a.users.disable : pending?.user.role === 'admin' ? a.users.makeDoctor : a.users.makeAdmin}
        confirmLabel={pending?.kind === 'disable' ? a.users.disable : a.confirm}
        onConfirm={() => pending && act.mutate({ kind: pending.kind, user: pending.user })}
        onClose={() => {
          setPending(undefined);
          act.reset();
        }}
        pending={act.isPending}
        error={act.error}
      >
        {pending?.kind === 'disable' && (
          <>
            {f(a.users.confirmDisable, { name: pending.user.name, email: pending.user.email })}
            {pending.user.id === me?.id && <strong> {a.users.confirmDisableSelf}</strong>}
          </>
        )}
        {pending?.kind === 'role' &&
          f(a.users.confirmRole, {
            name: pending.user.name,
            email: pending.user.email,
            from: roleName(pending.user.role),
            to: roleName(otherRole(pending.user.role)),
          })}
      </ConfirmDialog>
    </Stack>
  );
}
