/** Models (admin): the versions, upload, activate (and roll back), retire, shadow rate,
 * and the way to each version's evidence, alone or side by side. */
import { Admin, Health } from '@ocupredict/client';
import type { ModelVersion } from '@ocupredict/client';
import {
  Alert,
  Box,
  Button,
  Checkbox,
  Chip,
  LinearProgress,
  Link,
  Stack,
  TableCell,
  TableRow,
  TextField,
  Typography,
} from '@mui/material';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useRef, useState } from 'react';
import { Link as RouterLink, useNavigate } from 'react-router';

import { ApiError, isCode, unwrap } from '../api/errors';
import { progressFetch } from '../api/upload';
import { FormError } from '../components/states';
import { useI18n } from '../i18n/i18n';
import { modelActions, replacedBy, shadowRateOf, undoOf, wasActive } from './actions';
import type { Undo } from './actions';
import { ConfirmDialog } from './components';
import { useAdminMessages } from './messages';
import { DataTable, QueryStates, SectionCard } from './sections';

const MODELS_KEY = ['admin', 'models'] as const;

export function useModels() {
  return useQuery({ queryKey: MODELS_KEY, queryFn: () => unwrap(Admin.listModels()) });
}

/** The account that registered a version (its email), or "system" for start-up ones. */
export function CreatedBy({ id }: { id: number | null | undefined }) {
  const a = useAdminMessages();
  const user = useQuery({
    queryKey: ['admin', 'user', id],
    queryFn: () => unwrap(Admin.readUser({ path: { id: id ?? 0 } })),
    enabled: typeof id === 'number',
    staleTime: 10 * 60_000,
    retry: false,
  });
  if (typeof id !== 'number') return <>{a.models.system}</>;
  return <>{user.data?.email ?? `#${id}`}</>;
}

export function StatusChip({ version }: { version: Pick<ModelVersion, 'status' | 'demo'> }) {
  const a = useAdminMessages();
  const color = version.status === 'active' ? 'success' : version.status === 'staged' ? 'primary' : 'default';
  const mark = version.status === 'active' ? '●' : version.status === 'staged' ? '◐' : '○';
  return (
    <Box sx={{ display: 'flex', gap: 0.5, flexWrap: 'wrap' }}>
      <Chip size="small" variant="outlined" color={color} label={`${mark} ${a.models.statuses[version.status]}`} data-testid="status" />
      {version.demo && <Chip size="small" variant="outlined" color="warning" label={a.models.demo} />}
    </Box>
  );
}

function Serving() {
  const a = useAdminMessages();
  const { f } = useI18n();
  const ready = useQuery({
    queryKey: ['health', 'ready'],
    queryFn: () => unwrap(Health.ready()),
    refetchInterval: 3_000,
  });
  const model = ready.data?.model;
  return (
    <Alert severity="info" icon={false} data-testid="serving" data-version={model?.version ?? ''} aria-live="polite">
      <strong>{a.models.serving}: </strong>
      {model?.version ? f(a.models.servingText, { version: model.version, process: ready.data?.process ?? 0 }) : '–'}
      {model?.demo ? ` (${a.models.servingDemo})` : ''}
    </Alert>
  );
}

function Upload({ onRegistered }: { onRegistered: (version: ModelVersion) => void }) {
  const a = useAdminMessages();
  const { f, percent } = useI18n();
  const weightsRef = useRef<HTMLInputElement>(null);
  const manifestRef = useRef<HTMLInputElement>(null);
  const [weights, setWeights] = useState<File | undefined>();
  const [manifest, setManifest] = useState<File | undefined>();
  const [progress, setProgress] = useState(0);
  const upload = useMutation({
    mutationFn: (files: { weights: File; manifest?: File }) => {
      setProgress(0);
      const form = new FormData();
      form.append('weights', files.weights);
      if (files.manifest) form.append('manifest', files.manifest);
      return unwrap(
        Admin.registerModel({
          // The generated signature is the JSON form ({source}); the multipart form is
          // sent as built here, with the browser's boundary.
          body: form as unknown as { source: string },
          bodySerializer: null,
          headers: { 'Content-Type': null },
          fetch: progressFetch(setProgress),
        }),
      );
    },
    onSuccess: (version) => {
      setWeights(undefined);
      setManifest(undefined);
      if (weightsRef.current) weightsRef.current.value = '';
      if (manifestRef.current) manifestRef.current.value = '';
      onRegistered(version);
    },
  });
  const reason = upload.error instanceof ApiError && isCode(upload.error, 'INVALID_MODEL') && typeof upload.error.detail === 'string' ? upload.error.detail : undefined;
  const hidden = { position: 'absolute', width: 1, height: 1, opacity: 0, overflow: 'hidden' } as const;
  return (
    <SectionCard title={a.models.upload} help={a.models.uploadHelp}>
      <Box
        component="form"
        onSubmit={(e) => {
          e.preventDefault();
          if (weights) upload.mutate({ weights, ...(manifest ? { manifest } : {}) });
        }}
        sx={{ display: 'grid', gap: 2, maxWidth: 640 }}
      >
        <Box sx={{ display: 'flex', gap: 2, alignItems: 'center', flexWrap: 'wrap' }}>
          <Button variant="outlined" onClick={() => weightsRef.current?.click()}>
            {a.models.chooseWeights}
          </Button>
          <input ref={weightsRef} type="file" accept=".pth,.pt,application/octet-stream" aria-label={a.models.weights} data-testid="weights-input" style={hidden} tabIndex={-1} onChange={(e) => setWeights(e.target.files?.[0])} />
          <Typography data-testid="weights-name">{weights ? weights.name : a.models.noFile}</Typography>
        </Box>
        <Box sx={{ display: 'flex', gap: 2, alignItems: 'center', flexWrap: 'wrap' }}>
          <Button variant="outlined" onClick={() => manifestRef.current?.click()}>
            {a.models.chooseManifest}
          </Button>
          <input ref={manifestRef} type="file" accept=".json,application/json" aria-label={a.models.manifest} data-testid="manifest-input" style={hidden} tabIndex={-1} onChange={(e) => setManifest(e.target.files?.[0])} />
          <Typography data-testid="manifest-name">{manifest ? manifest.name : a.models.noFile}</Typography>
        </Box>
        {upload.isPending && (
          <Box role="status" aria-live="polite" data-testid="upload-progress">
            <Typography>{progress < 1 ? f(a.models.uploading, { pct: percent(progress, 0) }) : a.models.validating}</Typography>
            <LinearProgress variant={progress < 1 ? 'determinate' : 'indeterminate'} value={Math.round(progress * 100)} aria-label={a.models.upload} />
          </Box>
        )}
        <Box>
          <Button type="submit" variant="contained" disabled={!weights || upload.isPending}>
            {a.models.submit}
          </Button>
        </Box>
        {upload.error ? (
          <Box data-testid="upload-error">
            <FormError error={upload.error} />
            {reason && <Typography sx={{ mt: 1 }} data-testid="upload-reason">{f(a.models.reason, { reason })}</Typography>}
          </Box>
        ) : null}
      </Box>
    </SectionCard>
  );
}

type Pending = { kind: 'activate' | 'retire' | 'shadow'; version: ModelVersion };

interface Notice {
  text: string;
  undo?: Undo;
  testId?: string;
}

export default function ModelsPage() {
  const a = useAdminMessages();
  const { m, f, dateTime, percent } = useI18n();
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const models = useModels();
  const [pending, setPending] = useState<Pending | undefined>();
  const [rate, setRate] = useState('');
  const [notice, setNotice] = useState<Notice | undefined>();
  const [selected, setSelected] = useState<string[]>([]);

  const versions = models.data ?? [];
  const act = useMutation({
    mutationFn: async (action: { kind: Pending['kind']; version: string; rate?: number }) => {
      const path = { version: action.version };
      if (action.kind === 'activate') return unwrap(Admin.activateModel({ path }));
      if (action.kind === 'retire') return unwrap(Admin.retireModel({ path }));
      return unwrap(Admin.shadowModel({ path, body: { rate: action.rate ?? 0 } }));
    },
    onSuccess: (row, action) => {
      const previous = action.kind === 'activate' ? replacedBy(versions, action.version) : undefined;
      setPending(undefined);
      void queryClient.invalidateQueries({ queryKey: MODELS_KEY });
      void queryClient.invalidateQueries({ queryKey: ['health', 'ready'] });
      if (action.kind === 'activate') {
        setNotice({
          text: f(a.models.activatedDone, { version: row.version, previous: previous ?? '–' }),
          undo: undoOf('activate', { replaced: previous }),
          testId: 'activated',
        });
      } else if (action.kind === 'retire') {
        setNotice({ text: f(a.models.retired, { version: row.version }) });
      } else {
        setNotice({
          text: row.shadow_rate > 0 ? f(a.models.shadowDone, { version: row.version, rate: percent(row.shadow_rate, 0) }) : f(a.models.shadowOff, { version: row.version }),
        });
      }
    },
  });

  const open = (kind: Pending['kind'], version: ModelVersion) => {
    act.reset();
    setRate(String(Math.round(version.shadow_rate * 10_000) / 100));
    setPending({ kind, version });
  };
  const current = pending ? replacedBy(versions, pending.version.version) : undefined;
  const parsedRate = shadowRateOf(rate);

  return (
    <Stack spacing={2} component="section" aria-labelledby="models-title">
      <Typography variant="h4" component="h1" id="models-title">
        {a.models.title}
      </Typography>
      <Serving />
      {notice && (
        <Alert
          severity="success"
          data-testid="notice"
          onClose={() => setNotice(undefined)}
          action={
            notice.undo ? (
              <Button
                color="inherit"
                size="small"
                data-testid="undo"
                onClick={() => {
                  const target = String(notice.undo?.target);
                  const row = versions.find((v) => v.version === target);
                  if (row) open('activate', row);
                }}
              >
                {f(a.models.undoActivate, { previous: String(notice.undo.target) })}
              </Button>
            ) : undefined
          }
        >
          {notice.text}
        </Alert>
      )}
      <QueryStates query={models} empty={a.models.empty}>
        {(rows) => (
          <DataTable
            framed
            label={a.models.table}
            testId="models-table"
            columns={[{ label: a.models.compare, checkbox: true }, a.models.version, a.models.status, a.models.source, a.models.createdBy, a.models.created, a.models.activated, a.models.shadow, a.models.actions]}
          >
            {rows.map((v) => {
              const actions = modelActions(v);
              const checked = selected.includes(v.version);
              return (
                <TableRow key={v.version} data-testid="model-row" data-version={v.version} data-status={v.status} selected={checked}>
                  <TableCell padding="checkbox">
                    <Checkbox
                      checked={checked}
                      onChange={() => setSelected((s) => (checked ? s.filter((x) => x !== v.version) : [...s, v.version].slice(-2)))}
                      slotProps={{ input: { 'aria-label': f(a.models.compareWith, { version: v.version }) } }}
                    />
                  </TableCell>
                  <TableCell>
                    <Link component={RouterLink} to={`/admin/models/${v.version}`} sx={{ fontFamily: 'monospace' }} aria-label={f(a.models.evidenceOf, { version: v.version })}>
                      {v.version}
                    </Link>
                    {v.lineage && (
                      <Box>
                        <Link component={RouterLink} to={`/admin/models/${v.version}/evaluation`} variant="body2">
                          {a.models.lineage}
                        </Link>
                      </Box>
                    )}
                  </TableCell>
                  <TableCell>
                    <StatusChip version={v} />
                  </TableCell>
                  <TableCell sx={{ maxWidth: 160, overflowWrap: 'anywhere' }}>{v.source}</TableCell>
                  <TableCell sx={{ overflowWrap: 'anywhere' }}>
                    <CreatedBy id={v.created_by} />
                  </TableCell>
                  <TableCell>{dateTime(v.created_at)}</TableCell>
                  <TableCell>{v.activated_at ? dateTime(v.activated_at) : '–'}</TableCell>
                  <TableCell data-testid="shadow-rate">{v.shadow_rate > 0 ? percent(v.shadow_rate, 0) : '–'}</TableCell>
                  <TableCell>
                    <Box sx={{ display: 'flex', flexWrap: 'wrap', gap: 1 }}>
                      {actions.includes('activate') && (
                        <Button size="small" variant="contained" onClick={() => open('activate', v)} aria-label={`${wasActive(v) ? a.models.rollback : a.models.activate}: ${v.version}`}>
                          {wasActive(v) ? a.models.rollback : a.models.activate}
                        </Button>
                      )}
                      {actions.includes('shadow') && (
                        <Button size="small" variant="outlined" onClick={() => open('shadow', v)} aria-label={`${a.models.setShadow}: ${v.version}`}>
                          {a.models.setShadow}
                        </Button>
                      )}
                      {actions.includes('retire') && (
                        <Button size="small" color="error" variant="outlined" onClick={() => open('retire', v)} aria-label={`${a.models.retire}: ${v.version}`}>
                          {a.models.retire}
                        </Button>
                      )}
                    </Box>
                  </TableCell>
                </TableRow>
              );
            })}
          </DataTable>
        )}
      </QueryStates>
      {models.data && models.data.length > 1 && (
        <Box sx={{ display: 'flex', gap: 2, alignItems: 'center', flexWrap: 'wrap' }}>
          <Button
            variant="outlined"
            disabled={selected.length !== 2}
            onClick={() => navigate(`/admin/models/${selected[0]}?compare=${selected[1]}`)}
            data-testid="compare"
          >
            {a.models.compareSelected}
          </Button>
          {selected.length !== 2 && <Typography variant="body2">{a.models.selectToCompare}</Typography>}
        </Box>
      )}
      <Upload
        onRegistered={(version) => {
          void queryClient.invalidateQueries({ queryKey: MODELS_KEY });
          setNotice({ text: f(a.models.registered, { version: version.version }), testId: 'registered' });
        }}
      />
      <ConfirmDialog
        open={pending !== undefined}
        title={
          pending?.kind === 'activate'
            ? `${wasActive(pending.version) ? a.models.rollback : a.models.activate}: ${pending.version.version}`
            : pending?.kind === 'retire'
              ? `${a.models.retire}: ${pending.version.version}`
              : f(a.models.shadowTitle, { version: pending?.version.version ?? '' })
        }
        confirmLabel={pending?.kind === 'activate' ? a.models.activate : pending?.kind === 'retire' ? a.models.retire : m.common.save}
        danger={pending?.kind !== 'shadow'}
        irreversible={pending?.kind === 'retire'}
        onConfirm={() => {
          if (!pending) return;
          if (pending.kind === 'shadow') {
            if (parsedRate !== undefined) act.mutate({ kind: 'shadow', version: pending.version.version, rate: parsedRate });
          } else {
            act.mutate({ kind: pending.kind, version: pending.version.version });
          }
        }}
        onClose={() => setPending(undefined)}
        pending={act.isPending}
        error={act.error}
        extra={
          pending?.kind === 'shadow' ? (
            <TextField
              sx={{ mt: 2 }}
              label={a.models.shadowRate}
              value={rate}
              onChange={(e) => setRate(e.target.value)}
              error={parsedRate === undefined}
              slotProps={{ htmlInput: { inputMode: 'decimal', 'data-testid': 'shadow-input' } }}
              fullWidth
            />
          ) : undefined
        }
      >
        {pending?.kind === 'activate' &&
          (current
            ? f(a.models.confirmActivate, { version: pending.version.version, current })
            : f(a.models.confirmActivateNone, { version: pending.version.version }))}
        {pending?.kind === 'retire' && f(a.models.confirmRetire, { version: pending.version.version })}
        {pending?.kind === 'shadow' && a.models.shadowHelp}
      </ConfirmDialog>
      {!pending && act.error ? <FormError error={act.error} /> : null}
    </Stack>
  );
}
