/** Training (admin): start a job from a recipe of the allow-list, follow its progress live
 * (epoch, loss, time left), cancel it; a finished job links to its candidate's evaluation. */
import { Admin } from '@ocupredict/client';
import type { Recipe, TrainingJob } from '@ocupredict/client';
import {
  Alert,
  Box,
  Button,
  Chip,
  FormControl,
  InputLabel,
  LinearProgress,
  Link,
  MenuItem,
  Select,
  Stack,
  TableCell,
  TableRow,
  Typography,
} from '@mui/material';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useId, useState } from 'react';
import type { ReactNode } from 'react';
import { Link as RouterLink } from 'react-router';

import { unwrap } from '../api/errors';
import { FormError } from '../components/states';
import { useI18n } from '../i18n/i18n';
import { AdminError, ConfirmDialog } from './components';
import { useDatasets } from './DatasetsPage';
import { decimal, pct } from './evidence';
import { duration, isActive, progressShare } from './loop';
import { useAdminMessages } from './messages';
import { useModels } from './ModelsPage';
import { DataTable, QueryStates, SectionCard } from './sections';

const JOBS_KEY = ['admin', 'training-jobs'] as const;

function Picker({ label, value, onChange, children, testId }: { label: string; value: string; onChange: (v: string) => void; children: ReactNode; testId: string }) {
  const id = useId();
  return (
    <FormControl sx={{ minWidth: 240 }} size="small">
      <InputLabel id={id}>{label}</InputLabel>
      <Select labelId={id} label={label} value={value} onChange={(e) => onChange(e.target.value)} data-testid={testId}>
        {children}
      </Select>
    </FormControl>
  );
}

function RecipeSummary({ recipe }: { recipe: Recipe }) {
  const a = useAdminMessages();
  const { f, lang } = useI18n();
  return (
    <Box data-testid="recipe-summary" sx={{ typography: 'body2' }}>
      <Typography variant="body2" sx={{ mb: 0.5 }}>
        {recipe.description}
      </Typography>
      <div>{f(a.loop.epochsLr, { epochs: recipe.epochs, max: recipe.learning_rate.max, min: recipe.learning_rate.min })}</div>
      <div>{f(a.loop.layers, { layers: recipe.trainable_layers.join(', ') })}</div>
      <div>{f(a.loop.perDoctor, { pct: pct(recipe.max_share_per_doctor, lang, 0) })}</div>
      <div>{f(a.loop.minShadow, { n: recipe.min_shadow_cases })}</div>
      <div>{f(a.loop.gatesOf, { gates: recipe.gates.map((g) => `${a.evaluation.gateNames[g.name] ?? g.name} (${decimal(g.threshold, lang, 2)})`).join('; ') })}</div>
    </Box>
  );
}

function Start({ onStarted }: { onStarted: (job: TrainingJob) => void }) {
  const a = useAdminMessages();
  const recipes = useQuery({ queryKey: ['admin', 'recipes'], queryFn: () => unwrap(Admin.listRecipes()) });
  const datasets = useDatasets();
  const models = useModels();
  const [recipe, setRecipe] = useState('');
  const [train, setTrain] = useState('');
  const [test, setTest] = useState('');
  const [base, setBase] = useState('');
  const start = useMutation({
    mutationFn: () =>
      unwrap(
        Admin.createTrainingJob({
          body: { recipe, train_dataset_id: Number(train), test_dataset_id: Number(test), ...(base ? { base_version: base } : {}) },
        }),
      ),
    onSuccess: onStarted,
  });
  const chosen = recipes.data?.find((r) => r.name === recipe);
  return (
    <SectionCard title={a.loop.start} help={a.loop.startHelp}>
      {recipes.isError && <AdminError error={recipes.error} />}
      <Box
        component="form"
        onSubmit={(e) => {
          e.preventDefault();
          if (recipe && train && test) start.mutate();
        }}
        sx={{ display: 'grid', gap: 2, maxWidth: 640 }}
      >
        <Picker label={a.loop.recipe} value={recipe} onChange={setRecipe} testId="pick-recipe">
          {(recipes.data ?? []).map((r) => (
            <MenuItem key={r.name} value={r.name}>
              {r.name} v{r.version}
            </MenuItem>
          ))}
        </Picker>
        {chosen && <RecipeSummary recipe={chosen} />}
        <Picker label={a.loop.trainSet} value={train} onChange={setTrain} testId="pick-train">
          {(datasets.data ?? [])
            .filter((d) => d.kind === 'train')
            .map((d) => (
              <MenuItem key={d.id} value={String(d.id)}>
                {d.name} ({d.items})
              </MenuItem>
            ))}
        </Picker>
        <Picker label={a.loop.testSet} value={test} onChange={setTest} testId="pick-test">
          {(datasets.data ?? [])
            .filter((d) => d.kind === 'test')
            .map((d) => (
              <MenuItem key={d.id} value={String(d.id)}>
                🔒 {d.name} ({d.items})
              </MenuItem>
            ))}
        </Picker>
        <Picker label={a.loop.base} value={base} onChange={setBase} testId="pick-base">
          <MenuItem value="">{a.loop.baseActive}</MenuItem>
          {(models.data ?? [])
            .filter((v) => v.status !== 'retired')
            .map((v) => (
              <MenuItem key={v.version} value={v.version} sx={{ fontFamily: 'monospace' }}>
                {v.version} · {a.models.statuses[v.status]}
              </MenuItem>
            ))}
        </Picker>
        <Box>
          <Button type="submit" variant="contained" disabled={!recipe || !train || !test || start.isPending}>
            {a.loop.startSubmit}
          </Button>
        </Box>
        <FormError error={start.error} />
      </Box>
    </SectionCard>
  );
}

function Progress({ job }: { job: TrainingJob }) {
  const a = useAdminMessages();
  const { f, lang } = useI18n();
  const share = progressShare(job);
  const p = job.progress;
  const parts: string[] = [];
  if (p) {
    parts.push(a.loop.phases[p.phase]);
    if (p.epochs) parts.push(f(a.loop.epoch, { epoch: p.epoch, epochs: p.epochs }));
    if (p.steps) parts.push(f(a.loop.step, { step: p.step, steps: p.steps }));
    if (p.loss !== null && p.loss !== undefined) parts.push(f(a.loop.loss, { loss: decimal(p.loss, lang, 4) }));
    if (p.val_loss !== null && p.val_loss !== undefined) parts.push(f(a.loop.valLoss, { loss: decimal(p.val_loss, lang, 4) }));
    if (p.images_per_s) parts.push(f(a.loop.speed, { n: decimal(p.images_per_s, lang, 1) }));
    if (isActive(job) && p.eta_s !== null && p.eta_s !== undefined) parts.push(f(a.loop.eta, { t: duration(p.eta_s) }));
  }
  return (
    <Box sx={{ minWidth: 200 }} data-testid="job-progress" data-epoch={p?.epoch ?? ''} data-batches={p?.batches_done ?? ''} data-loss={p?.loss ?? ''} data-phase={p?.phase ?? ''}>
      {share !== null && <LinearProgress variant="determinate" value={Math.round(share * 100)} aria-label={`${a.loop.progress}: ${pct(share, lang, 0)}`} />}
      <Typography variant="body2" sx={{ mt: 0.5 }}>
        {parts.join(' · ') || '–'}
      </Typography>
      {job.error && (
        <Typography variant="body2" color="error" sx={{ overflowWrap: 'anywhere' }}>
          {f(a.loop.error, { error: job.error })}
        </Typography>
      )}
    </Box>
  );
}

export default function TrainingPage() {
  const a = useAdminMessages();
  const { f, dateTime } = useI18n();
  const queryClient = useQueryClient();
  const [notice, setNotice] = useState<string | undefined>();
  const [cancelling, setCancelling] = useState<TrainingJob | undefined>();
  const jobs = useQuery({
    queryKey: JOBS_KEY,
    queryFn: () => unwrap(Admin.listTrainingJobs()),
    // Live while a job is queued or running.
    refetchInterval: (query) => (query.state.data?.some(isActive) ? 1_500 : false),
  });
  const cancel = useMutation({
    mutationFn: (job: TrainingJob) => unwrap(Admin.cancelTrainingJob({ path: { job_id: job.id } })),
    onSuccess: (job) => {
      setCancelling(undefined);
      setNotice(f(a.loop.cancelled, { id: job.id }));
      void queryClient.invalidateQueries({ queryKey: JOBS_KEY });
    },
  });
  const statusColor = (s: TrainingJob['status']) => (s === 'succeeded' ? 'success' : s === 'failed' ? 'error' : s === 'running' ? 'primary' : 'default');
  return (
    <Stack spacing={2} component="section" aria-labelledby="training-title">
      <Typography variant="h4" component="h1" id="training-title">
        {a.loop.training}
      </Typography>
      {notice && (
        <Alert severity="success" data-testid="notice" onClose={() => setNotice(undefined)}>
          {notice}
        </Alert>
      )}
      <Start
        onStarted={(job) => {
          setNotice(f(a.loop.started, { id: job.id }));
          void queryClient.invalidateQueries({ queryKey: JOBS_KEY });
        }}
      />
      <Typography variant="h5" component="h2">
        {a.loop.jobs}
      </Typography>
      <QueryStates query={jobs} empty={a.loop.noJobs}>
        {(rows) => (
          <DataTable framed label={a.loop.jobs} testId="jobs-table" columns={[a.loop.job, a.loop.status, a.loop.progress, a.loop.recipe, a.loop.candidate, '']}>
            {rows.map((job) => (
              <TableRow key={job.id} data-testid="job-row" data-id={job.id} data-status={job.status}>
                <TableCell>
                  #{job.id}
                  <Typography variant="body2" sx={{ color: 'text.secondary' }}>
                    {dateTime(job.created_at)}
                  </Typography>
                </TableCell>
                <TableCell>
                  <Chip size="small" variant="outlined" color={statusColor(job.status)} label={a.loop.statuses[job.status]} />
                </TableCell>
                <TableCell>
                  <Progress job={job} />
                </TableCell>
                <TableCell>
                  {job.recipe} v{job.recipe_version}
                  <Typography variant="body2" sx={{ color: 'text.secondary', fontFamily: 'monospace' }}>
                    {job.base_version} · {job.train_dataset_id} → {job.test_dataset_id}
                  </Typography>
                </TableCell>
                <TableCell>
                  {job.candidate_version ? (
                    <Link component={RouterLink} to={`/admin/models/${job.candidate_version}/evaluation`} sx={{ fontFamily: 'monospace' }} data-testid="evaluation-link">
                      {job.candidate_version}
                    </Link>
                  ) : (
                    '–'
                  )}
                </TableCell>
                <TableCell>
                  {isActive(job) && (
                    <Button size="small" color="error" variant="outlined" onClick={() => setCancelling(job)} disabled={job.cancel_requested} aria-label={`${a.loop.cancel} #${job.id}`}>
                      {a.loop.cancel}
                    </Button>
                  )}
                </TableCell>
              </TableRow>
            ))}
          </DataTable>
        )}
      </QueryStates>
      <ConfirmDialog
        open={cancelling !== undefined}
        title={a.loop.cancel}
        confirmLabel={a.loop.cancel}
        irreversible
        onConfirm={() => cancelling && cancel.mutate(cancelling)}
        onClose={() => {
          setCancelling(undefined);
          cancel.reset();
        }}
        pending={cancel.isPending}
        error={cancel.error}
      >
        {f(a.loop.confirmCancel, { id: cancelling?.id ?? '' })}
      </ConfirmDialog>
    </Stack>
  );
}
