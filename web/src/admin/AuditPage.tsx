/** The audit trail (admin): filters in the URL, keyset (cursor) pages, an event's old and
 * new values, and the CSV export of the filtered events, streamed through the client. */
import { Admin } from '@ocupredict/client';
import type { AdminUser, AuditEvent } from '@ocupredict/client';
import {
  Alert,
  Autocomplete,
  Box,
  Button,
  Dialog,
  DialogActions,
  DialogContent,
  DialogTitle,
  FormControl,
  InputLabel,
  Link,
  MenuItem,
  Select,
  Stack,
  Table,
  TableBody,
  TableCell,
  TableHead,
  TableRow,
  TextField,
  Typography,
} from '@mui/material';
import { keepPreviousData, useMutation, useQuery } from '@tanstack/react-query';
import { useEffect, useId, useMemo, useState } from 'react';
import { useLocation, useNavigate, useSearchParams } from 'react-router';

import { browserTimeZone } from '../api/classes';
import { unwrap } from '../api/errors';
import { Empty, FormError, Loading } from '../components/states';
import { TextFilter } from '../components/TextFilter';
import { useI18n } from '../i18n/i18n';
import { AdminError } from './components';
import { attachmentName, readCsv, saveBlob } from './csv';
import {
  AUDIT_ACTIONS,
  TARGET_TYPES,
  auditExportQuery,
  auditFiltersFromSearch,
  auditListQuery,
  eventChanges,
  hasAuditFilters,
  searchFromAuditFilters,
  showValue,
  withAuditFilter,
} from './filters';
import type { AuditFilters } from './filters';
import { useAdminMessages } from './messages';
import { DataTable } from './sections';

/** Pick the actor by email or name (GET /admin/users?q=); the filter keeps the id. */
function ActorFilter({ actorId, onChange }: { actorId: number | undefined; onChange: (id: number | undefined) => void }) {
  const a = useAdminMessages();
  const [input, setInput] = useState('');
  const [q, setQ] = useState('');
  useEffect(() => {
    const timer = setTimeout(() => setQ(input.trim()), 300);
    return () => clearTimeout(timer);
  }, [input]);
  const chosen = useQuery({
    queryKey: ['admin', 'user', actorId],
    queryFn: () => unwrap(Admin.readUser({ path: { id: actorId ?? 0 } })),
    enabled: actorId !== undefined,
    staleTime: 10 * 60_000,
    retry: false,
  });
  const options = useQuery({
    queryKey: ['admin', 'users', 'pick', q],
    queryFn: () => unwrap(Admin.listUsers({ query: { page: 1, page_size: 10, ...(q ? { q } : {}) } })),
    placeholderData: keepPreviousData,
  });
  const value = actorId === undefined ? null : (chosen.data ?? null);
  return (
    <Autocomplete<AdminUser>
      size="small"
      sx={{ minWidth: 260 }}
      options={options.data?.items ?? []}
      value={value}
      filterOptions={(x) => x}
      getOptionLabel={(u) => u.email}
      isOptionEqualToValue={(x, y) => x.id === y.id}
      renderOption={(props, u) => (
        <li {...props} key={u.id}>
          {u.email} · {u.name}
        </li>
      )}
      onInputChange={(_, text) => setInput(text)}
      onChange={(_, user) => onChange(user?.id)}
      renderInput={(params) => <TextField {...params} label={a.audit.actor} placeholder={a.audit.actorHelp} />}
      data-testid="filter-actor"
    />
  );
}

function Filters({ filters, update }: { filters: AuditFilters; update: (change: Partial<AuditFilters>) => void }) {
  const a = useAdminMessages();
  const { m } = useI18n();
  const actionId = useId();
  const typeId = useId();
  return (
    <Box component="section" aria-label={a.audit.filters} sx={{ display: 'flex', flexWrap: 'wrap', gap: 2 }}>
      <ActorFilter actorId={filters.actorId} onChange={(actorId) => update({ actorId })} />
      <FormControl size="small" sx={{ minWidth: 220 }}>
        <InputLabel id={actionId}>{a.audit.action}</InputLabel>
        <Select
          labelId={actionId}
          label={a.audit.action}
          value={filters.action ?? ''}
          onChange={(e) => update({ action: (e.target.value || undefined) as AuditFilters['action'] })}
          data-testid="filter-action"
        >
          <MenuItem value="">{m.common.all}</MenuItem>
          {AUDIT_ACTIONS.map((action) => (
            <MenuItem key={action} value={action}>
              {a.action[action] ?? action}
            </MenuItem>
          ))}
        </Select>
      </FormControl>
      <FormControl size="small" sx={{ minWidth: 170 }}>
        <InputLabel id={typeId}>{a.audit.targetType}</InputLabel>
        <Select labelId={typeId} label={a.audit.targetType} value={filters.targetType ?? ''} onChange={(e) => update({ targetType: e.target.value || undefined })} data-testid="filter-target-type">
          <MenuItem value="">{m.common.all}</MenuItem>
          {TARGET_TYPES.map((t) => (
            <MenuItem key={t} value={t}>
              {t}
            </MenuItem>
          ))}
        </Select>
      </FormControl>
      <TextFilter label={a.audit.targetId} value={filters.targetId ?? ''} max={64} testId="filter-target-id" onChange={(v) => update({ targetId: v.trim() || undefined })} />
      <TextField size="small" type="date" label={a.audit.from} value={filters.dateFrom ?? ''} onChange={(e) => update({ dateFrom: e.target.value || undefined })} slotProps={{ inputLabel: { shrink: true }, htmlInput: { 'data-testid': 'filter-from' } }} />
      <TextField size="small" type="date" label={a.audit.to} value={filters.dateTo ?? ''} onChange={(e) => update({ dateTo: e.target.value || undefined })} slotProps={{ inputLabel: { shrink: true }, htmlInput: { 'data-testid': 'filter-to' } }} />
      {hasAuditFilters(filters) && (
        <Button onClick={() => update({ actorId: undefined, action: undefined, targetType: undefined, targetId: undefined, dateFrom: undefined, dateTo: undefined })}>{a.audit.clear}</Button>
      )}
    </Box>
  );
}

function EventDialog({ event, onClose }: { event: AuditEvent | undefined; onClose: () => void }) {
  const a = useAdminMessages();
  const { m, f, dateTime } = useI18n();
  const changes = event ? eventChanges(event) : [];
  return (
    <Dialog open={event !== undefined} onClose={onClose} aria-labelledby="event-title" maxWidth="md" fullWidth data-testid="event-dialog">
      <DialogTitle id="event-title">{event ? f(a.audit.event, { id: event.id }) : ''}</DialogTitle>
      {event && (
        <DialogContent>
          <Box component="dl" sx={{ display: 'grid', gridTemplateColumns: 'max-content 1fr', columnGap: 2, rowGap: 0.5, m: 0, mb: 2, '& dd': { m: 0, overflowWrap: 'anywhere' } }}>
            <dt>{a.audit.at}</dt>
            <dd>{dateTime(event.at)}</dd>
            <dt>{a.audit.who}</dt>
            <dd>{event.actor_email ?? (event.actor_id ? `#${event.actor_id}` : '–')}</dd>
            <dt>{a.audit.what}</dt>
            <dd>{a.action[event.action] ?? event.action}</dd>
            <dt>{a.audit.target}</dt>
            <dd>{event.target_type ? `${event.target_type} ${event.target_id ?? ''}` : '–'}</dd>
            <dt>{a.audit.ip}</dt>
            <dd>{event.ip ?? '–'}</dd>
            <dt>{a.audit.requestId}</dt>
            <dd>{event.request_id ?? '–'}</dd>
          </Box>
          {changes.length === 0 ? (
            <Typography>{a.audit.noChanges}</Typography>
          ) : (
            <Box sx={{ overflowX: 'auto' }}>
              <Table size="small" aria-label={f(a.audit.event, { id: event.id })} data-testid="event-changes">
                <TableHead>
                  <TableRow>
                    <TableCell>{a.audit.field}</TableCell>
                    <TableCell>{a.audit.old}</TableCell>
                    <TableCell>{a.audit.new}</TableCell>
                  </TableRow>
                </TableHead>
                <TableBody>
                  {changes.map((c) => (
                    <TableRow key={c.field} data-field={c.field} data-changed={String(c.changed)}>
                      <TableCell component="th" scope="row" sx={{ fontWeight: c.changed ? 700 : 400 }}>
                        {c.field}
                        {c.changed ? ' *' : ''}
                      </TableCell>
                      <TableCell data-testid="old" sx={{ fontFamily: 'monospace', overflowWrap: 'anywhere' }}>
                        {showValue(c.old)}
                      </TableCell>
                      <TableCell data-testid="new" sx={{ fontFamily: 'monospace', overflowWrap: 'anywhere' }}>
                        {showValue(c.new)}
                      </TableCell>
                    </TableRow>
                  ))}
                </TableBody>
              </Table>
            </Box>
          )}
        </DialogContent>
      )}
      <DialogActions>
        <Button onClick={onClose} autoFocus>
          {m.common.close}
        </Button>
      </DialogActions>
    </Dialog>
  );
}

interface PageState {
  /** The cursors of the pages before this one ('' for the first). */
  trail?: string[];
}

export default function AuditPage() {
  const a = useAdminMessages();
  const { f, dateTime } = useI18n();
  const [params] = useSearchParams();
  const location = useLocation();
  const navigate = useNavigate();
  const filters = useMemo(() => auditFiltersFromSearch(params), [params]);
  const trail = useMemo(() => ((location.state as PageState | null)?.trail ?? []).filter((c) => typeof c === 'string'), [location.state]);
  const tz = browserTimeZone();
  const [open, setOpen] = useState<AuditEvent | undefined>();
  const [exported, setExported] = useState<number | undefined>();
  const [progress, setProgress] = useState(0);
  const go = (next: AuditFilters, state: PageState) => navigate({ search: searchFromAuditFilters(next).toString() }, { state });
  const update = (change: Partial<AuditFilters>) => go(withAuditFilter(filters, change), {});

  const list = useQuery({
    queryKey: ['admin', 'audit', searchFromAuditFilters(filters).toString(), tz],
    queryFn: () => unwrap(Admin.listAudit({ query: auditListQuery(filters, tz) })),
    placeholderData: keepPreviousData,
  });

  const exportCsv = useMutation({
    mutationFn: async () => {
      setExported(undefined);
      setProgress(0);
      const result = await Admin.exportAudit({ query: auditExportQuery(filters, tz), parseAs: 'stream' });
      if (!result.response?.ok || !result.data) {
        await unwrap(Promise.resolve(result)); // throws the ApiError of the body
      }
      const stream = result.data as unknown as ReadableStream<Uint8Array>;
      const { blob, records } = await readCsv(stream, setProgress);
      saveBlob(blob, attachmentName(result.response?.headers.get('Content-Disposition'), 'audit.csv'));
      return records;
    },
    onSuccess: (records) => setExported(records),
  });

  const items = list.data?.items ?? [];
  return (
    <Stack spacing={2} component="section" aria-labelledby="audit-title">
      <Typography variant="h4" component="h1" id="audit-title">
        {a.audit.title}
      </Typography>
      <Filters filters={filters} update={update} />
      <Box sx={{ display: 'flex', gap: 2, alignItems: 'center', flexWrap: 'wrap' }}>
        <Button variant="outlined" onClick={() => exportCsv.mutate()} disabled={exportCsv.isPending} data-testid="export">
          {a.audit.export}
        </Button>
        {exportCsv.isPending && (
          <Typography role="status" aria-live="polite">
            {f(a.audit.exporting, { rows: progress })}
          </Typography>
        )}
        {exported !== undefined && (
          <Alert severity="success" data-testid="exported" data-rows={exported}>
            {f(a.audit.exported, { rows: exported })}
          </Alert>
        )}
      </Box>
      <FormError error={exportCsv.error} />
      {list.isPending && <Loading />}
      {list.isError && <AdminError error={list.error} onRetry={() => void list.refetch()} />}
      {list.data && items.length === 0 && <Empty>{a.audit.empty}</Empty>}
      {items.length > 0 && (
        <DataTable framed label={a.audit.table} testId="audit-table" columns={[a.audit.at, a.audit.who, a.audit.what, a.audit.target, a.audit.ip]}>
          {items.map((event) => (
            <TableRow key={event.id} hover data-testid="audit-row" data-id={event.id} data-action={event.action}>
              <TableCell>
                <Link component="button" type="button" onClick={() => setOpen(event)} aria-label={`${dateTime(event.at)} · ${f(a.audit.open, { id: event.id })}`} sx={{ textAlign: 'left' }}>
                  {dateTime(event.at)}
                </Link>
              </TableCell>
              <TableCell sx={{ overflowWrap: 'anywhere' }}>{event.actor_email ?? (event.actor_id ? `#${event.actor_id}` : '–')}</TableCell>
              <TableCell>{a.action[event.action] ?? event.action}</TableCell>
              <TableCell sx={{ overflowWrap: 'anywhere' }}>{event.target_type ? `${event.target_type} ${event.target_id ?? ''}` : '–'}</TableCell>
              <TableCell>{event.ip ?? '–'}</TableCell>
            </TableRow>
          ))}
        </DataTable>
      )}
      <Box component="nav" aria-label={a.audit.table} sx={{ display: 'flex', gap: 2, alignItems: 'center' }}>
        <Button
          disabled={trail.length === 0}
          onClick={() => {
            const previous = trail[trail.length - 1];
            go({ ...filters, cursor: previous || undefined }, { trail: trail.slice(0, -1) });
          }}
          data-testid="audit-previous"
        >
          ← {a.previous}
        </Button>
        <Typography variant="body2">{f(a.audit.page, { n: trail.length + 1 })}</Typography>
        <Button
          disabled={!list.data?.next_cursor}
          onClick={() => list.data?.next_cursor && go({ ...filters, cursor: list.data.next_cursor }, { trail: [...trail, filters.cursor ?? ''] })}
          data-testid="audit-next"
        >
          {a.next} →
        </Button>
      </Box>
      <EventDialog event={open} onClose={() => setOpen(undefined)} />
    </Stack>
  );
}
