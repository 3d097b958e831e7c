/** The dashboard: today / 7 days / 30 days / all in the browser's time zone. */
import { Home } from '@ocupredict/client';
import type { Stats } from '@ocupredict/client';
import { Box, Card, CardContent, Stack, Table, TableBody, TableCell, TableHead, TableRow, ToggleButton, ToggleButtonGroup, Typography } from '@mui/material';
import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { Bar, BarChart, CartesianGrid, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import { useSearchParams } from 'react-router';

import { browserTimeZone } from '../api/classes';
import { unwrap } from '../api/errors';
import { RecommendationBadge } from '../components/Recommendation';
import type { RecommendationCode } from '../components/Recommendation';
import { Empty, ErrorState, Loading } from '../components/states';
import { useI18n } from '../i18n/i18n';

const RANGES = ['today', 'week', 'month', 'all'] as const;
type Range = (typeof RANGES)[number];

function StatCard({ title, value, note, testId }: { title: string; value: string; note?: string; testId: string }) {
  return (
    <Card variant="outlined" sx={{ flex: '1 1 180px' }}>
      <CardContent>
        <Typography variant="body2" component="h2" sx={{ color: 'text.secondary' }}>
          {title}
        </Typography>
        <Typography variant="h4" component="p" data-testid={testId}>
          {value}
        </Typography>
        {note && <Typography variant="body2">{note}</Typography>}
      </CardContent>
    </Card>
  );
}

function Section({ title, children }: { title: string; children: React.ReactNode }) {
  return (
    <Card variant="outlined" component="section">
      <CardContent>
        <Typography variant="h6" component="h2" gutterBottom>
          {title}
        </Typography>
        {children}
      </CardContent>
    </Card>
  );
}

function CountTable({ rows, label, countLabel }: { rows: { key: string; label: React.ReactNode; count: number }[]; label: string; countLabel: string }) {
  return (
    <Table size="small" aria-label={label}>
      <TableHead>
        <TableRow>
          <TableCell>{label}</TableCell>
          <TableCell align="right">{countLabel}</TableCell>
        </TableRow>
      </TableHead>
      <TableBody>
        {rows.map((row) => (
          <TableRow key={row.key} data-key={row.key}>
            <TableCell>{row.label}</TableCell>
            <TableCell align="right">{row.count}</TableCell>
          </TableRow>
        ))}
      </TableBody>
    </Table>
  );
}

function Body({ stats }: { stats: Stats }) {
  const { m, f, percent, date } = useI18n();
  const mine = stats.mine;
  const label = (code: string) => stats.labels[code] ?? code;
  const daily = mine.daily.map((d) => ({ day: date(d.date), count: d.count }));
  const classes = Object.entries(mine.by_class).map(([code, count]) => ({ key: code, label: label(code), count }));
  return (
    <Stack spacing={2}>
      <Box sx={{ display: 'flex', flexWrap: 'wrap', gap: 2 }}>
        <StatCard title={m.dashboard.mine} value={String(mine.total)} testId="stat-mine" note={f(m.dashboard.withFeedback, { n: mine.with_feedback })} />
        <StatCard title={m.dashboard.overall} value={String(stats.overall.total)} testId="stat-overall" />
        <StatCard
          title={m.dashboard.correctPct}
          value={mine.correct_pct === null ? '–' : percent(mine.correct_pct / 100)}
          testId="stat-correct"
          note={mine.correct_pct === null ? m.dashboard.noFeedback : `${mine.correct}/${mine.with_feedback}`}
        />
        <StatCard
          title={m.dashboard.ungradable}
          value={mine.total ? percent(mine.ungradable / mine.total) : '–'}
          testId="stat-ungradable"
          note={`${mine.ungradable}/${mine.total}`}
        />
      </Box>
      {mine.total === 0 && <Empty>{m.dashboard.empty}</Empty>}
      <Section title={m.dashboard.daily}>
        <Box sx={{ width: '100%', height: 240 }} aria-hidden>
          <ResponsiveContainer>
            <BarChart data={daily} accessibilityLayer={false}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="day" fontSize={12} />
              <YAxis allowDecimals={false} fontSize={12} />
              <Tooltip />
              <Bar dataKey="count" name={m.dashboard.count} fill="#0b5394" />
            </BarChart>
          </ResponsiveContainer>
        </Box>
        <details>
          <summary>{m.dashboard.daily}</summary>
          <CountTable rows={mine.daily.map((d) => ({ key: d.date, label: date(d.date), count: d.count }))} label={m.dashboard.day} countLabel={m.dashboard.count} />
        </details>
      </Section>
      <Box sx={{ display: 'grid', gap: 2, gridTemplateColumns: { xs: '1fr', md: '1fr 1fr' } }}>
        <Section title={m.dashboard.byClass}>
          <Box sx={{ width: '100%', height: 200 }} aria-hidden>
            <ResponsiveContainer>
              <BarChart data={classes} layout="vertical" margin={{ left: 40 }} accessibilityLayer={false}>
                <XAxis type="number" allowDecimals={false} fontSize={12} />
                <YAxis type="category" dataKey="label" width={120} fontSize={12} />
                <Tooltip />
                <Bar dataKey="count" name={m.dashboard.count} fill="#38761d" />
              </BarChart>
            </ResponsiveContainer>
          </Box>
          <CountTable rows={classes} label={m.history.class} countLabel={m.dashboard.count} />
        </Section>
        <Section title={m.dashboard.byRecommendation}>
          <CountTable
            rows={Object.entries(mine.by_recommendation).map(([code, count]) => ({
              key: code,
              label: <RecommendationBadge value={code as RecommendationCode} />,
              count,
            }))}
            label={m.history.recommendation}
            countLabel={m.dashboard.count}
          />
        </Section>
      </Box>
      <Section title={m.dashboard.confusion}>
        {mine.confusion.length === 0 ? (
          <Empty>{m.dashboard.noFeedback}</Empty>
        ) : (
          <Box sx={{ overflowX: 'auto' }}>
            <Table size="small" aria-label={m.dashboard.confusion} data-testid="confusion">
              <TableHead>
                <TableRow>
                  <TableCell>
                    {m.dashboard.predicted} \ {m.dashboard.confirmed}
                  </TableCell>
                  {Object.keys(stats.labels).map((code) => (
                    <TableCell key={code} align="right">
                      {label(code)}
                    </TableCell>
                  ))}
                </TableRow>
              </TableHead>
              <TableBody>
                {Object.keys(stats.labels).map((predicted) => (
                  <TableRow key={predicted}>
                    <TableCell component="th" scope="row">
                      {label(predicted)}
                    </TableCell>
                    {Object.keys(stats.labels).map((confirmed) => {
                      const cell = mine.confusion.find((c) => c.predicted === predicted && c.confirmed === confirmed);
                      return (
                        <TableCell key={confirmed} align="right" sx={{ fontWeight: predicted === confirmed ? 700 : 400 }}>
                          {cell?.count ?? 0}
                        </TableCell>
                      );
                    })}
                  </TableRow>
                ))}
              </TableBody>
            </Table>
          </Box>
        )}
      </Section>
    </Stack>
  );
}

export default function DashboardPage() {
  const { m, f } = useI18n();
  const [params, setParams] = useSearchParams();
  const range: Range = (RANGES as readonly string[]).includes(params.get('range') ?? '') ? (params.get('range') as Range) : 'today';
  const tz = browserTimeZone();
  const stats = useQuery({
    queryKey: ['stats', range, tz],
    queryFn: () => unwrap(Home.stats({ query: { range, tz } })),
    placeholderData: keepPreviousData,
  });
  return (
    <Stack spacing={2} component="section" aria-labelledby="dashboard-title">
      <Typography variant="h4" component="h1" id="dashboard-title">
        {m.dashboard.title}
      </Typography>
      <Box sx={{ display: 'flex', flexWrap: 'wrap', alignItems: 'center', gap: 2 }}>
        <ToggleButtonGroup
          exclusive
          value={range}
          onChange={(_, value: Range | null) => value && setParams(value === 'today' ? {} : { range: value })}
          aria-label={m.dashboard.range}
          size="small"
        >
          {RANGES.map((r) => (
            <ToggleButton key={r} value={r}>
              {m.dashboard[r]}
            </ToggleButton>
          ))}
        </ToggleButtonGroup>
        <Typography variant="body2" sx={{ color: 'text.secondary' }}>
          {f(m.dashboard.timezone, { tz })}
        </Typography>
      </Box>
      {stats.isPending && <Loading />}
      {stats.isError && <ErrorState error={stats.error} onRetry={() => void stats.refetch()} />}
      {stats.data && <Body stats={stats.data} />}
    </Stack>
  );
}
