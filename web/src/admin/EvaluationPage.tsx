/** A trained version's evaluation on its locked test set (GET /admin/models/{version}/
 * evaluation): accuracy against the parent, per class, calibration, referral, and each
 * gate passed or failed with its numbers; promotion only where gates and shadow allow. */
import { Admin } from '@ocupredict/client';
import type { Evaluation, GateResult } from '@ocupredict/client';
import { Alert, Box, Button, Chip, Link, Stack, TableCell, TableRow, Typography } from '@mui/material';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { Link as RouterLink, useParams } from 'react-router';

import { isCode, unwrap } from '../api/errors';
import { Empty, Loading } from '../components/states';
import { useI18n } from '../i18n/i18n';
import type { Lang } from '../i18n/messages';
import { replacedBy } from './actions';
import { AdminError, ConfirmDialog } from './components';
import { useDatasets } from './DatasetsPage';
import { classLabels, decimal, pct, points } from './evidence';
import { gateComparison, gateName, promotion, short } from './loop';
import type { AdminMessages } from './messages';
import { useAdminMessages } from './messages';
import { StatusChip, useModels } from './ModelsPage';
import { DataTable, Figure, SectionCard } from './sections';

const VERSION = /^[0-9a-f]{12}$/;

/** A gate's value or threshold in its own unit: counts as integers, the rest as shares. */
function gateNumber(name: string, value: number | null, lang: Lang): string {
  if (value === null) return '–';
  const gate = gateName(name).gate;
  if (gate === 'min_test_images_per_class') return String(Math.round(value));
  if (gate === 'ece_max') return decimal(value, lang);
  if (gate.endsWith('_diff_lower_bound')) return points(value, lang);
  return pct(value, lang);
}

export function gateLabel(a: AdminMessages, name: string, labels: Record<string, string>): string {
  const { gate, classCode } = gateName(name);
  const base = a.evaluation.gateNames[gate] ?? gate;
  return classCode ? `${base}: ${labels[classCode] ?? classCode}` : base;
}

function Gates({ gates, labels }: { gates: GateResult[]; labels: Record<string, string> }) {
  const a = useAdminMessages();
  const { f, lang } = useI18n();
  return (
    <SectionCard title={a.evaluation.gates}>
      <DataTable label={a.evaluation.gates} testId="gates" columns={[a.evaluation.gate, { label: a.evaluation.value, numeric: true }, { label: a.evaluation.threshold, numeric: true }, a.evaluation.verdict]}>
        {gates.map((g) => (
          <TableRow key={g.name} data-testid="gate" data-name={g.name} data-passed={String(g.passed)}>
            <TableCell component="th" scope="row">
              {gateLabel(a, g.name, labels)}
            </TableCell>
            <TableCell align="right" data-value={g.value ?? ''}>
              {gateNumber(g.name, g.value, lang)}
            </TableCell>
            <TableCell align="right" data-value={g.threshold}>
              {gateComparison(g.name)} {gateNumber(g.name, g.threshold, lang)}
            </TableCell>
            <TableCell>
              <Chip size="small" variant="outlined" color={g.passed ? 'success' : 'error'} label={`${g.passed ? '✓' : '✗'} ${g.passed ? a.evaluation.passed : a.evaluation.failed}`} />
              <Typography variant="body2" component="span" sx={{ ml: 1 }}>
                {g.value === null
                  ? a.evaluation.whyMissing
                  : f(a.evaluation.why, { value: gateNumber(g.name, g.value, lang), cmp: gateComparison(g.name), threshold: gateNumber(g.name, g.threshold, lang) })}
              </Typography>
            </TableCell>
          </TableRow>
        ))}
      </DataTable>
    </SectionCard>
  );
}

function PerClass({ evaluation, labels }: { evaluation: Evaluation; labels: Record<string, string> }) {
  const a = useAdminMessages();
  const { lang } = useI18n();
  return (
    <SectionCard title={a.evaluation.perClass}>
      <DataTable
        label={a.evaluation.perClass}
        columns={[a.evidence.class, { label: a.evidence.precision, numeric: true }, { label: a.evaluation.recallCi, numeric: true }, { label: a.evaluation.parentRecall, numeric: true }, { label: a.evidence.support, numeric: true }]}
      >
        {Object.entries(evaluation.per_class).map(([code, c]) => (
          <TableRow key={code} data-testid="eval-class" data-code={code}>
            <TableCell component="th" scope="row">
              {labels[code] ?? code}
            </TableCell>
            <TableCell align="right">{pct(c.precision, lang)}</TableCell>
            <TableCell align="right">
              {pct(c.recall, lang)}
              {c.recall_ci95 ? ` (${pct(c.recall_ci95[0], lang)} – ${pct(c.recall_ci95[1], lang)})` : ''}
            </TableCell>
            <TableCell align="right">{pct(c.parent_recall, lang)}</TableCell>
            <TableCell align="right" data-value={c.support}>
              {c.support}
            </TableCell>
          </TableRow>
        ))}
      </DataTable>
    </SectionCard>
  );
}

export default function EvaluationPage() {
  const a = useAdminMessages();
  const { f, lang } = useI18n();
  const queryClient = useQueryClient();
  const { version: raw } = useParams();
  const version = raw && VERSION.test(raw) ? raw : '';
  const [confirming, setConfirming] = useState(false);
  const models = useModels();
  const datasets = useDatasets();
  const evaluation = useQuery({
    queryKey: ['admin', 'evaluation', version],
    queryFn: () => unwrap(Admin.modelEvaluation({ path: { version } })),
    enabled: Boolean(version),
    retry: (count, error) => !isCode(error, 'NOT_FOUND') && !isCode(error, 'FORBIDDEN') && count < 2,
  });
  const metrics = useQuery({
    queryKey: ['admin', 'metrics', version, '', '', 'shadow'],
    queryFn: () => unwrap(Admin.modelMetrics({ path: { version } })),
    enabled: Boolean(version),
  });
  const activate = useMutation({
    mutationFn: () => unwrap(Admin.activateModel({ path: { version } })),
    onSuccess: () => {
      setConfirming(false);
      void queryClient.invalidateQueries({ queryKey: ['admin', 'models'] });
    },
  });
  const row = models.data?.find((v) => v.version === version);
  const labels = classLabels(row, lang);
  const back = (
    <Link component={RouterLink} to="/admin/training">
      ← {a.evaluation.back}
    </Link>
  );
  if (!version || isCode(evaluation.error, 'NOT_FOUND')) {
    return (
      <Stack spacing={2} data-testid="not-found">
        <Box>{back}</Box>
        <Typography variant="h4" component="h1">
          {f(a.evaluation.title, { version: raw ?? '' })}
        </Typography>
        <Empty>{a.evaluation.none}</Empty>
      </Stack>
    );
  }
  const e = evaluation.data;
  const compared = metrics.data?.shadow?.compared ?? 0;
  const decision = e ? promotion(e, compared) : undefined;
  const testSet = datasets.data?.find((d) => d.id === e?.test_dataset_id);
  const current = models.data ? replacedBy(models.data, version) : undefined;
  return (
    <Stack spacing={2} component="section" aria-labelledby="evaluation-title">
      <Box>{back}</Box>
      <Typography variant="h4" component="h1" id="evaluation-title">
        {f(a.evaluation.title, { version })}
      </Typography>
      {row && <StatusChip version={row} />}
      {evaluation.isPending && <Loading />}
      {evaluation.isError && <AdminError error={evaluation.error} onRetry={() => void evaluation.refetch()} />}
      {e && decision && (
        <>
          <Typography>
            {f(a.evaluation.summary, { dataset: testSet ? `«${testSet.name}»` : `#${e.test_dataset_id}`, images: e.images, parent: e.parent_version })}
          </Typography>
          {row?.lineage && (
            <Typography variant="body2" data-testid="lineage">
              {a.evaluation.lineage}: {f(a.evaluation.lineageText, { recipe: row.lineage.recipe, version: row.lineage.recipe_version ?? '–', seed: row.lineage.seed, code: row.lineage.code_version })} · {a.evaluation.trainSha}{' '}
              <code>{short(row.lineage.train_dataset_sha256)}</code> · {a.evaluation.testSha} <code>{short(row.lineage.test_dataset_sha256)}</code>
            </Typography>
          )}
          <Box sx={{ display: 'flex', flexWrap: 'wrap', gap: 2 }}>
            <Figure
              label={a.evaluation.accuracy}
              value={pct(e.accuracy, lang)}
              raw={e.accuracy}
              testId="eval-accuracy"
              note={e.accuracy_ci95 ? f(a.evidence.ci, { low: pct(e.accuracy_ci95[0], lang), high: pct(e.accuracy_ci95[1], lang) }) : undefined}
            />
            <Figure label={a.evaluation.parentAccuracy} value={pct(e.parent_accuracy, lang)} raw={e.parent_accuracy} testId="eval-parent-accuracy" />
            <Figure
              label={a.evaluation.diff}
              value={e.accuracy !== null && e.parent_accuracy !== null ? points(e.accuracy - e.parent_accuracy, lang) : '–'}
              raw={e.accuracy !== null && e.parent_accuracy !== null ? e.accuracy - e.parent_accuracy : null}
              testId="eval-diff"
              note={e.accuracy_diff_ci95 ? `${points(e.accuracy_diff_ci95[0] ?? null, lang)} – ${points(e.accuracy_diff_ci95[1] ?? null, lang)}` : undefined}
            />
            <Figure label={a.evaluation.mcnemar} value={decimal(e.mcnemar_p, lang)} raw={e.mcnemar_p} testId="eval-mcnemar" />
            <Figure label={a.evaluation.eceBefore} value={decimal(e.ece_before, lang)} raw={e.ece_before} testId="eval-ece-before" />
            <Figure label={a.evaluation.eceAfter} value={decimal(e.ece_after, lang)} raw={e.ece_after} testId="eval-ece-after" note={`${a.evaluation.temperature}: ${decimal(e.temperature, lang, 2)}`} />
            <Figure
              label={a.evaluation.sensitivity}
              value={pct(e.referral.sensitivity, lang)}
              raw={e.referral.sensitivity}
              testId="eval-sensitivity"
              note={f(a.evaluation.parent, { v: pct(e.referral.parent_sensitivity, lang) })}
            />
            <Figure
              label={a.evaluation.specificity}
              value={pct(e.referral.specificity, lang)}
              raw={e.referral.specificity}
              testId="eval-specificity"
              note={f(a.evaluation.parent, { v: pct(e.referral.parent_specificity, lang) })}
            />
          </Box>
          <Gates gates={e.gates} labels={labels} />
          <PerClass evaluation={e} labels={labels} />
          <SectionCard title={a.evaluation.promote} help={a.evaluation.promoteHelp}>
            {decision.allowed ? (
              <Alert severity="success" data-testid="promotion-allowed" sx={{ mb: 2 }}>
                {f(a.evaluation.allowed, { compared })}
              </Alert>
            ) : (
              <Alert severity="warning" data-testid="promotion-refused" data-reason={decision.reason} sx={{ mb: 2 }}>
                {decision.reason === 'GATES_NOT_MET'
                  ? f(a.evaluation.refusedGates, { n: decision.failed.length, gates: decision.failed.map((g) => gateLabel(a, g.name, labels)).join('; ') })
                  : f(a.evaluation.refusedShadow, { compared: decision.compared, needed: decision.needed })}
              </Alert>
            )}
            {row?.status === 'staged' && (
              <Button variant="contained" disabled={!decision.allowed} onClick={() => setConfirming(true)} data-testid="promote">
                {a.evaluation.promote}
              </Button>
            )}
          </SectionCard>
        </>
      )}
      <ConfirmDialog
        open={confirming}
        title={`${a.models.activate}: ${version}`}
        confirmLabel={a.models.activate}
        onConfirm={() => activate.mutate()}
        onClose={() => {
          setConfirming(false);
          activate.reset();
        }}
        pending={activate.isPending}
        error={activate.error}
      >
        {current ? f(a.models.confirmActivate, { version, current }) : f(a.models.confirmActivateNone, { version })}
      </ConfirmDialog>
    </Stack>
  );
}
