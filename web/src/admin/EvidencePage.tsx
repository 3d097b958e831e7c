/** A model version's evidence from the doctors' feedback (GET /admin/models/{version}/metrics),
 * alone or beside another version's: accuracy with its 95% interval, per-class precision,
 * recall and support, the confusion matrix, the reliability diagram and ECE, and the
 * shadow run's agreement and accuracy. Every number is the API's (data-value holds it). */
import { Admin } from '@ocupredict/client';
import type { ModelMetrics, ModelVersion } from '@ocupredict/client';
import {
  Box,
  FormControl,
  InputLabel,
  Link,
  MenuItem,
  Select,
  Stack,
  TableCell,
  TableRow,
  TextField,
  Typography,
} from '@mui/material';
import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { useId, useMemo } from 'react';
import { Link as RouterLink, useParams, useSearchParams } from 'react-router';
import { CartesianGrid, ReferenceLine, ResponsiveContainer, Scatter, ScatterChart, Tooltip, XAxis, YAxis } from 'recharts';

import { browserTimeZone } from '../api/classes';
import { isCode, unwrap } from '../api/errors';
import { Empty, Loading } from '../components/states';
import { useI18n } from '../i18n/i18n';
import { AdminError } from './components';
import { classLabels, compareClasses, compareMetrics, confusionMatrix, decimal, pct, points, reliabilityPoints } from './evidence';
import type { Metric } from './evidence';
import { useAdminMessages } from './messages';
import { CreatedBy, StatusChip, useModels } from './ModelsPage';
import { DataTable, Figure, SectionCard } from './sections';

const VERSION = /^[0-9a-f]{12}$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

function useMetrics(version: string | undefined, from: string | undefined, to: string | undefined) {
  const tz = browserTimeZone();
  return useQuery({
    queryKey: ['admin', 'metrics', version, from ?? '', to ?? '', tz],
    queryFn: () =>
      unwrap(
        Admin.modelMetrics({
          path: { version: version ?? '' },
          query: { ...(from ? { date_from: from } : {}), ...(to ? { date_to: to } : {}), ...(from || to ? { tz } : {}) },
        }),
      ),
    enabled: Boolean(version),
    placeholderData: keepPreviousData,
    retry: (count, error) => !isCode(error, 'NOT_FOUND') && !isCode(error, 'FORBIDDEN') && count < 2,
  });
}

function Reliability({ metrics }: { metrics: ModelMetrics }) {
  const a = useAdminMessages();
  const { lang } = useI18n();
  const pts = reliabilityPoints(metrics);
  return (
    <SectionCard level="h3" title={a.evidence.reliability} testId="reliability">
      <Typography variant="body2" sx={{ mb: 1 }}>
        {a.evidence.reliabilityHelp}
      </Typography>
      <Typography sx={{ mb: 1 }}>
        {a.evidence.ece}:{' '}
        <strong data-testid="ev-ece" data-value={metrics.ece ?? ''}>
          {decimal(metrics.ece, lang)}
        </strong>
      </Typography>
      {pts.length === 0 ? (
        <Empty>{a.evidence.noFeedback}</Empty>
      ) : (
        <>
          <Box sx={{ width: '100%', maxWidth: 420, height: 280 }} aria-hidden>
            <ResponsiveContainer>
              <ScatterChart margin={{ top: 8, right: 16, bottom: 24, left: 8 }} accessibilityLayer={false}>
                <CartesianGrid strokeDasharray="3 3" />
                <XAxis type="number" dataKey="confidence" domain={[0, 1]} ticks={[0, 0.2, 0.4, 0.6, 0.8, 1]} fontSize={12} name={a.evidence.confidence} label={{ value: a.evidence.confidence, position: 'bottom', fontSize: 12 }} />
                <YAxis type="number" dataKey="accuracy" domain={[0, 1]} ticks={[0, 0.2, 0.4, 0.6, 0.8, 1]} fontSize={12} name={a.evidence.observed} />
                <ReferenceLine segment={[{ x: 0, y: 0 }, { x: 1, y: 1 }]} stroke="#555" strokeDasharray="4 4" ifOverflow="extendDomain" />
                <Tooltip />
                <Scatter data={pts} fill="#0b5394" name={a.evidence.observed} />
              </ScatterChart>
            </ResponsiveContainer>
          </Box>
          <DataTable label={a.evidence.reliability} columns={[a.evidence.bin, { label: a.evidence.count, numeric: true }, { label: a.evidence.confidence, numeric: true }, { label: a.evidence.observed, numeric: true }]}>
            {pts.map((p) => (
              <TableRow key={p.bin} data-testid="reliability-bin" data-low={p.low}>
                <TableCell>{p.bin}</TableCell>
                <TableCell align="right" data-value={p.count}>
                  {p.count}
                </TableCell>
                <TableCell align="right" data-value={p.confidence}>
                  {pct(p.confidence, lang)}
                </TableCell>
                <TableCell align="right" data-value={p.accuracy}>
                  {pct(p.accuracy, lang)}
                </TableCell>
              </TableRow>
            ))}
          </DataTable>
        </>
      )}
    </SectionCard>
  );
}

function Confusion({ metrics, labels }: { metrics: ModelMetrics; labels: Record<string, string> }) {
  const a = useAdminMessages();
  const matrix = confusionMatrix(metrics.confusion, Object.keys(labels));
  const name = (code: string | null) => (code === null ? a.evidence.unknown : (labels[code] ?? code));
  return (
    <SectionCard level="h3" title={a.evidence.confusion}>
      {matrix.total === 0 ? (
        <Empty>{a.evidence.noFeedback}</Empty>
      ) : (
        <DataTable
          label={a.evidence.confusion}
          testId="ev-confusion"
          columns={[`${a.evidence.predicted} \\ ${a.evidence.confirmed}`, ...matrix.columns.map((c) => ({ label: name(c), numeric: true }))]}
        >
          {matrix.rows.map((row, i) => (
            <TableRow key={row}>
              <TableCell component="th" scope="row">
                {name(row)}
              </TableCell>
              {matrix.columns.map((c, j) => (
                <TableCell
                  key={c ?? '-'}
                  align="right"
                  data-testid="ev-cell"
                  data-predicted={row}
                  data-confirmed={c ?? ''}
                  data-value={matrix.counts[i]?.[j] ?? 0}
                  sx={{ fontWeight: row === c ? 700 : 400 }}
                >
                  {matrix.counts[i]?.[j] ?? 0}
                </TableCell>
              ))}
            </TableRow>
          ))}
        </DataTable>
      )}
    </SectionCard>
  );
}

function PerClass({ metrics, labels }: { metrics: ModelMetrics; labels: Record<string, string> }) {
  const a = useAdminMessages();
  const { lang } = useI18n();
  return (
    <SectionCard level="h3" title={a.evidence.perClass}>
      <DataTable
        label={a.evidence.perClass}
        testId="ev-per-class"
        columns={[a.evidence.class, { label: a.evidence.precision, numeric: true }, { label: a.evidence.recall, numeric: true }, { label: a.evidence.support, numeric: true }]}
      >
        {Object.entries(metrics.per_class).map(([code, c]) => (
          <TableRow key={code} data-testid="ev-class" data-code={code}>
            <TableCell component="th" scope="row">
              {labels[code] ?? code}
            </TableCell>
            <TableCell align="right" data-metric="precision" data-value={c.precision ?? ''}>
              {pct(c.precision, lang)}
            </TableCell>
            <TableCell align="right" data-metric="recall" data-value={c.recall ?? ''}>
              {pct(c.recall, lang)}
            </TableCell>
            <TableCell align="right" data-metric="support" data-value={c.support}>
              {c.support}
            </TableCell>
          </TableRow>
        ))}
      </DataTable>
    </SectionCard>
  );
}

function Shadow({ metrics }: { metrics: ModelMetrics }) {
  const a = useAdminMessages();
  const { lang, f } = useI18n();
  const s = metrics.shadow;
  return (
    <SectionCard level="h3" title={a.evidence.shadow} testId="ev-shadow">
      {!s ? (
        <Typography>{a.evidence.shadowNone}</Typography>
      ) : (
        <Box sx={{ display: 'flex', flexWrap: 'wrap', gap: 2 }}>
          <Figure label={a.evidence.compared} value={String(s.compared)} raw={s.compared} testId="ev-shadow-compared" />
          <Figure label={a.evidence.agreement} value={pct(s.agreement, lang)} raw={s.agreement} testId="ev-shadow-agreement" />
          <Figure
            label={a.evidence.shadowAccuracy}
            value={pct(s.accuracy, lang)}
            raw={s.accuracy}
            testId="ev-shadow-accuracy"
            note={<Typography variant="body2">{f(a.evidence.judged, { n: s.judged })}</Typography>}
          />
        </Box>
      )}
    </SectionCard>
  );
}

/** One version's evidence. */
function Evidence({ version, row, metrics }: { version: string; row: ModelVersion | undefined; metrics: ModelMetrics }) {
  const a = useAdminMessages();
  const { lang, f } = useI18n();
  const labels = classLabels(row, lang);
  const ci = metrics.accuracy_ci95;
  return (
    <Stack spacing={2} data-testid="evidence" data-version={version}>
      <Box>
        <Typography variant="h5" component="h2" sx={{ fontFamily: 'monospace' }}>
          {version}
        </Typography>
        {row && (
          <Box sx={{ display: 'flex', gap: 2, alignItems: 'center', flexWrap: 'wrap', mt: 1 }}>
            <StatusChip version={row} />
            <Typography variant="body2">
              {row.source} · <CreatedBy id={row.created_by} />
            </Typography>
          </Box>
        )}
      </Box>
      <Box sx={{ display: 'flex', flexWrap: 'wrap', gap: 2 }}>
        <Figure label={a.evidence.predictions} value={String(metrics.predictions)} raw={metrics.predictions} testId="ev-predictions" />
        <Figure label={a.evidence.withFeedback} value={String(metrics.with_feedback)} raw={metrics.with_feedback} testId="ev-with-feedback" />
        <Figure
          label={a.evidence.accuracy}
          value={pct(metrics.accuracy, lang)}
          raw={metrics.accuracy}
          testId="ev-accuracy"
          note={
            ci ? (
              <Typography variant="body2" data-testid="ev-ci" data-low={ci[0]} data-high={ci[1]}>
                {f(a.evidence.ci, { low: pct(ci[0], lang), high: pct(ci[1], lang) })}
              </Typography>
            ) : (
              <Typography variant="body2">{a.evidence.noFeedback}</Typography>
            )
          }
        />
      </Box>
      <PerClass metrics={metrics} labels={labels} />
      <Confusion metrics={metrics} labels={labels} />
      <Reliability metrics={metrics} />
      <Shadow metrics={metrics} />
    </Stack>
  );
}

const METRIC_LABEL: Record<Metric, (a: ReturnType<typeof useAdminMessages>) => string> = {
  predictions: (a) => a.evidence.predictions,
  with_feedback: (a) => a.evidence.withFeedback,
  accuracy: (a) => a.evidence.accuracy,
  ece: (a) => a.evidence.ece,
  shadow_agreement: (a) => a.evidence.agreement,
  shadow_accuracy: (a) => a.evidence.shadowAccuracy,
};

function Comparison({ a: first, b: second, labels }: { a: ModelMetrics; b: ModelMetrics; labels: Record<string, string> }) {
  const a = useAdminMessages();
  const { lang } = useI18n();
  const show = (metric: Metric, value: number | null) =>
    value === null ? '–' : metric === 'predictions' || metric === 'with_feedback' ? String(value) : metric === 'ece' ? decimal(value, lang) : pct(value, lang);
  const diff = (metric: Metric, value: number | null) =>
    value === null ? '–' : metric === 'predictions' || metric === 'with_feedback' ? (value > 0 ? `+${value}` : String(value)) : metric === 'ece' ? decimal(value, lang) : points(value, lang);
  return (
    <SectionCard level="h3" title={a.evidence.compareTitle} testId="comparison">
      <DataTable
        label={a.evidence.compareTitle}
        columns={['', { label: `A · ${first.version}`, numeric: true, monospace: true }, { label: `B · ${second.version}`, numeric: true, monospace: true }, { label: a.evidence.difference, numeric: true }]}
      >
        {compareMetrics(first, second).map((r) => (
          <TableRow key={r.metric} data-testid="compare-row" data-metric={r.metric}>
            <TableCell component="th" scope="row">
              {METRIC_LABEL[r.metric](a)}
            </TableCell>
            <TableCell align="right" data-value={r.a ?? ''}>
              {show(r.metric, r.a)}
            </TableCell>
            <TableCell align="right" data-value={r.b ?? ''}>
              {show(r.metric, r.b)}
            </TableCell>
            <TableCell align="right">{diff(r.metric, r.difference)}</TableCell>
          </TableRow>
        ))}
        {compareClasses(first, second).map((c) => (
          <TableRow key={c.code}>
            <TableCell component="th" scope="row">
              {a.evidence.recall}: {labels[c.code] ?? c.code}
            </TableCell>
            <TableCell align="right">{pct(c.a?.recall, lang)}</TableCell>
            <TableCell align="right">{pct(c.b?.recall, lang)}</TableCell>
            <TableCell align="right">{points(c.a?.recall != null && c.b?.recall != null ? c.b.recall - c.a.recall : null, lang)}</TableCell>
          </TableRow>
        ))}
      </DataTable>
    </SectionCard>
  );
}

export default function EvidencePage() {
  const a = useAdminMessages();
  const { lang, f } = useI18n();
  const { version: raw } = useParams();
  const [params, setParams] = useSearchParams();
  const version = raw && VERSION.test(raw) ? raw : undefined;
  const compareRaw = params.get('compare');
  const compare = compareRaw && VERSION.test(compareRaw) && compareRaw !== version ? compareRaw : undefined;
  const from = DATE.test(params.get('from') ?? '') ? (params.get('from') ?? undefined) : undefined;
  const to = DATE.test(params.get('to') ?? '') ? (params.get('to') ?? undefined) : undefined;
  const models = useModels();
  const first = useMetrics(version, from, to);
  const second = useMetrics(compare, from, to);
  const rows = useMemo(() => new Map((models.data ?? []).map((v) => [v.version, v])), [models.data]);
  const compareId = useId();
  const set = (key: string, value: string | undefined) => {
    const next = new URLSearchParams(params);
    if (value) next.set(key, value);
    else next.delete(key);
    setParams(next);
  };

  const back = (
    <Link component={RouterLink} to="/admin/models">
      ← {a.evidence.back}
    </Link>
  );
  if (!version || isCode(first.error, 'NOT_FOUND')) {
    return (
      <Stack spacing={2} data-testid="not-found">
        <Box>{back}</Box>
        <Typography variant="h4" component="h1">
          {f(a.models.evidenceOf, { version: raw ?? '' })}
        </Typography>
        <Empty>{a.models.empty}</Empty>
      </Stack>
    );
  }
  return (
    <Stack spacing={2} component="section" aria-labelledby="evidence-title">
      <Box>{back}</Box>
      <Typography variant="h4" component="h1" id="evidence-title">
        {compare ? a.evidence.compareTitle : f(a.models.evidenceOf, { version })}
      </Typography>
      <Box sx={{ display: 'flex', flexWrap: 'wrap', gap: 2, alignItems: 'center' }}>
        <FormControl size="small" sx={{ minWidth: 220 }}>
          <InputLabel id={compareId}>{a.evidence.compareWith}</InputLabel>
          <Select labelId={compareId} label={a.evidence.compareWith} value={compare ?? ''} onChange={(e) => set('compare', e.target.value || undefined)} data-testid="compare-select">
            <MenuItem value="">{a.evidence.noCompare}</MenuItem>
            {(models.data ?? [])
              .filter((v) => v.version !== version)
              .map((v) => (
                <MenuItem key={v.version} value={v.version} sx={{ fontFamily: 'monospace' }}>
                  {v.version} · {a.models.statuses[v.status]}
                </MenuItem>
              ))}
          </Select>
        </FormControl>
        <TextField size="small" type="date" label={a.evidence.from} value={from ?? ''} onChange={(e) => set('from', e.target.value || undefined)} slotProps={{ inputLabel: { shrink: true } }} />
        <TextField size="small" type="date" label={a.evidence.to} value={to ?? ''} onChange={(e) => set('to', e.target.value || undefined)} slotProps={{ inputLabel: { shrink: true } }} />
      </Box>
      {first.isPending && <Loading />}
      {first.isError && <AdminError error={first.error} onRetry={() => void first.refetch()} />}
      {compare && second.isError && <AdminError error={second.error} onRetry={() => void second.refetch()} />}
      {first.data && compare && second.data && (
        <Comparison a={first.data} b={second.data} labels={classLabels(rows.get(version), lang)} />
      )}
      {first.data && (
        <Box sx={{ display: 'grid', gap: 2, gridTemplateColumns: { xs: 'minmax(0, 1fr)', md: compare ? 'minmax(0, 1fr) minmax(0, 1fr)' : 'minmax(0, 1fr)' } }}>
          <Evidence version={version} row={rows.get(version)} metrics={first.data} />
          {compare && second.data && <Evidence version={compare} row={rows.get(compare)} metrics={second.data} />}
        </Box>
      )}
    </Stack>
  );
}
