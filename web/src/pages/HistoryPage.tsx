/** The history: server-side paging, sorting and every filter of the API, all in the URL. */
import { History } from '@ocupredict/client';
import type { PredictionSummary } from '@ocupredict/client';
import {
  Box,
  Button,
  Card,
  CardContent,
  FormControl,
  InputLabel,
  Link,
  MenuItem,
  Select,
  Table,
  TableBody,
  TableCell,
  TableContainer,
  TableHead,
  TablePagination,
  TableRow,
  TableSortLabel,
  TextField,
  Typography,
} from '@mui/material';
import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { memo, useId, useMemo } from 'react';
import { Link as RouterLink, useSearchParams } from 'react-router';

import { browserTimeZone, useClassLabels } from '../api/classes';
import { unwrap } from '../api/errors';
import { RecommendationBadge } from '../components/Recommendation';
import { Empty, ErrorState, Loading } from '../components/states';
import { TextFilter } from '../components/TextFilter';
import {
  FEEDBACKS,
  PAGE_SIZES,
  RECOMMENDATIONS,
  filtersFromSearch,
  hasFilters,
  searchFromFilters,
  toQuery,
  withFilter,
} from '../history/filters';
import type { HistoryFilters, Sort } from '../history/filters';
import { useI18n } from '../i18n/i18n';

function SelectFilter({
  label,
  value,
  options,
  onChange,
  testId,
}: {
  label: string;
  value: string;
  options: { value: string; label: string }[];
  onChange: (value: string) => void;
  testId: string;
}) {
  const { m } = useI18n();
  const id = useId();
  return (
    <FormControl size="small" sx={{ minWidth: 170 }}>
      <InputLabel id={id}>{label}</InputLabel>
      <Select labelId={id} label={label} value={value} onChange={(e) => onChange(e.target.value)} data-testid={testId}>
        <MenuItem value="">{m.common.all}</MenuItem>
        {options.map((o) => (
          <MenuItem key={o.value} value={o.value}>
            {o.label}
          </MenuItem>
        ))}
      </Select>
    </FormControl>
  );
}

// memo: the eight inputs are not drawn again when only the list's data arrives (a render that
// React cannot slice: it comes from the query's external store).
const Filters = memo(function Filters({
  filters,
  update,
}: {
  filters: HistoryFilters;
  update: (change: Partial<HistoryFilters>) => void;
}) {
  const { m } = useI18n();
  const labels = useClassLabels();
  return (
    <Box component="section" aria-label={m.history.filters} sx={{ display: 'flex', flexWrap: 'wrap', gap: 2, mb: 2 }}>
      <SelectFilter
        label={m.history.class}
        testId="filter-class"
        value={filters.predictedClass ?? ''}
        options={Object.entries(labels).map(([value, label]) => ({ value, label }))}
        onChange={(v) => update({ predictedClass: v || undefined })}
      />
      <SelectFilter
        label={m.history.feedback}
        testId="filter-feedback"
        value={filters.feedback ?? ''}
        options={FEEDBACKS.map((v) => ({
          value: v,
          label: v === 'correct' ? m.feedback.feedbackCorrect : v === 'incorrect' ? m.feedback.feedbackIncorrect : m.feedback.feedbackNone,
        }))}
        onChange={(v) => update({ feedback: (v || undefined) as HistoryFilters['feedback'] })}
      />
      <SelectFilter
        label={m.history.recommendation}
        testId="filter-recommendation"
        value={filters.recommendation ?? ''}
        options={RECOMMENDATIONS.map((v) => ({ value: v, label: m.recommendation[v] }))}
        onChange={(v) => update({ recommendation: (v || undefined) as HistoryFilters['recommendation'] })}
      />
      <SelectFilter
        label={m.history.gradable}
        testId="filter-gradable"
        value={filters.gradable === undefined ? '' : String(filters.gradable)}
        options={[
          { value: 'true', label: m.common.yes },
          { value: 'false', label: m.common.no },
        ]}
        onChange={(v) => update({ gradable: v === '' ? undefined : v === 'true' })}
      />
      <TextFilter label={m.history.patientRef} value={filters.patientRef ?? ''} max={64} onChange={(v) => update({ patientRef: v.trim() || undefined })} />
      <TextFilter label={m.history.text} value={filters.q ?? ''} max={100} onChange={(v) => update({ q: v.trim() || undefined })} />
      <TextField
        size="small"
        type="date"
        label={m.history.dateFrom}
        value={filters.dateFrom ?? ''}
        onChange={(e) => update({ dateFrom: e.target.value || undefined })}
        slotProps={{ inputLabel: { shrink: true } }}
      />
      <TextField
        size="small"
        type="date"
        label={m.history.dateTo}
        value={filters.dateTo ?? ''}
        onChange={(e) => update({ dateTo: e.target.value || undefined })}
        slotProps={{ inputLabel: { shrink: true } }}
      />
      {hasFilters(filters) && (
        <Button
          onClick={() =>
            update({
              predictedClass: undefined,
              feedback: undefined,
              recommendation: undefined,
              gradable: undefined,
              patientRef: undefined,
              q: undefined,
              dateFrom: undefined,
              dateTo: undefined,
            })
          }
        >
          {m.history.clear}
        </Button>
      )}
    </Box>
  );
});

function FeedbackText({ item }: { item: PredictionSummary }) {
  const { m } = useI18n();
  if (!item.feedback) return <>{`– ${m.feedback.feedbackNone}`}</>;
  if (item.feedback.verdict === 'correct') return <>{`✓ ${m.feedback.feedbackCorrect}`}</>;
  const corrected = item.probabilities.find((p) => p.class_code === item.feedback?.correct_class)?.label;
  return <>{`✎ ${m.feedback.feedbackIncorrect}${corrected ? ` → ${corrected}` : ''}`}</>;
}

const SORTABLE: { key: Sort; label: (m: ReturnType<typeof useI18n>['m']) => string }[] = [
  { key: 'created_at', label: (m) => m.history.date },
  { key: 'filename', label: (m) => m.history.file },
  { key: 'predicted_class', label: (m) => m.history.result },
  { key: 'feedback', label: (m) => m.history.feedback },
];

export function HistoryPage() {
  const { m, f, dateTime, percent } = useI18n();
  const [params, setParams] = useSearchParams();
  const filters = useMemo(() => filtersFromSearch(params), [params]);
  const tz = browserTimeZone();
  const update = useMemo(
    () => (change: Partial<HistoryFilters>) => setParams(searchFromFilters(withFilter(filtersFromSearch(params), change))),
    [params, setParams],
  );

  const list = useQuery({
    queryKey: ['history', 'list', searchFromFilters(filters).toString(), tz],
    queryFn: () => unwrap(History.list({ query: toQuery(filters, tz) })),
    placeholderData: keepPreviousData,
  });

  const sortBy = (key: Sort) =>
    update({ sort: key, order: filters.sort === key && filters.order === 'desc' ? 'asc' : 'desc', page: 1 });

  return (
    <Box component="section" aria-labelledby="history-title">
      <Typography variant="h4" component="h1" id="history-title" gutterBottom>
        {m.history.title}
      </Typography>
      <Filters filters={filters} update={update} />
      {list.isPending && <Loading />}
      {list.isError && <ErrorState error={list.error} onRetry={() => void list.refetch()} />}
      {list.data && list.data.items.length === 0 && <Empty>{hasFilters(filters) ? m.history.empty : m.history.emptyAll}</Empty>}
      {list.data && list.data.items.length > 0 && (
        <Card variant="outlined">
          <CardContent sx={{ p: 0, '&:last-child': { pb: 0 } }}>
            <TableContainer>
              <Table size="small" aria-label={m.history.tableLabel} data-testid="history-table">
                <TableHead>
                  <TableRow>
                    <TableCell>{m.history.thumbnail}</TableCell>
                    {SORTABLE.map(({ key, label }) => (
                      <TableCell key={key} sortDirection={filters.sort === key ? filters.order : false}>
                        <TableSortLabel
                          active={filters.sort === key}
                          direction={filters.sort === key ? filters.order : 'desc'}
                          onClick={() => sortBy(key)}
                        >
                          {label(m)}
                        </TableSortLabel>
                      </TableCell>
                    ))}
                    <TableCell>{m.history.recommendation}</TableCell>
                    <TableCell>{m.history.patient}</TableCell>
                  </TableRow>
                </TableHead>
                <TableBody>
                  {list.data.items.map((item) => (
                    <TableRow key={item.id} hover data-testid="history-row" data-id={item.id}>
                      <TableCell>
                        <img
                          src={item.thumbnail_url}
                          alt={f(m.history.thumbAlt, { id: item.id })}
                          width={56}
                          height={56}
                          loading="lazy"
                          style={{ objectFit: 'cover', borderRadius: 4, display: 'block' }}
                          onError={() => {
                            // An expired signed URL: the page again, with fresh ones.
                            if (Date.parse(item.thumbnail_url_expires_at) <= Date.now() + 5_000) void list.refetch();
                          }}
                        />
                      </TableCell>
                      <TableCell>
                        <Link component={RouterLink} to={`/history/${item.id}`} title={f(m.history.open, { id: item.id })}>
                          {dateTime(item.created_at)}
                        </Link>
                      </TableCell>
                      <TableCell sx={{ maxWidth: 180, overflowWrap: 'anywhere' }}>{item.image.filename}</TableCell>
                      <TableCell>
                        {item.result.label} ({percent(item.result.probability, 0)})
                      </TableCell>
                      <TableCell>
                        <FeedbackText item={item} />
                      </TableCell>
                      <TableCell>
                        <RecommendationBadge value={item.recommendation} />
                      </TableCell>
                      <TableCell>{item.patient_ref ?? '–'}</TableCell>
                    </TableRow>
                  ))}
                </TableBody>
              </Table>
            </TableContainer>
            <TablePagination
              component="div"
              count={list.data.total}
              page={filters.page - 1}
              rowsPerPage={filters.pageSize}
              rowsPerPageOptions={[...PAGE_SIZES]}
              onPageChange={(_, page) => update({ ...filters, page: page + 1 })}
              onRowsPerPageChange={(e) => update({ pageSize: Number(e.target.value) })}
              labelRowsPerPage={m.history.rowsPerPage}
              labelDisplayedRows={({ from, to, count }) => `${from}–${to} ${m.history.of} ${count}`}
            />
          </CardContent>
        </Card>
      )}
    </Box>
  );
}
