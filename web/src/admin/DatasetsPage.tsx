/** Datasets (admin): immutable snapshots of the doctors' labels (built from feedback up to
 * a cut-off date) or imported from a labelled folder; locked test sets marked as such. */
import { Admin } from '@ocupredict/client';
import type { Dataset } from '@ocupredict/client';
import {
  Alert,
  Box,
  Button,
  Chip,
  FormControl,
  FormControlLabel,
  FormLabel,
  Radio,
  RadioGroup,
  Stack,
  TableCell,
  TableRow,
  TextField,
  Typography,
} from '@mui/material';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useId, useState } from 'react';

import { browserTimeZone } from '../api/classes';
import { unwrap } from '../api/errors';
import { FormError } from '../components/states';
import { useI18n } from '../i18n/i18n';
import { readCsv, saveBlob } from './csv';
import { short } from './loop';
import { useAdminMessages } from './messages';
import { CreatedBy } from './ModelsPage';
import { DataTable, QueryStates, SectionCard } from './sections';

export const DATASETS_KEY = ['admin', 'datasets'] as const;

export function useDatasets() {
  return useQuery({ queryKey: DATASETS_KEY, queryFn: () => unwrap(Admin.listDatasets()) });
}

function today(): string {
  const now = new Date();
  return `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}-${String(now.getDate()).padStart(2, '0')}`;
}

function Counts({ counts, label }: { counts: Record<string, number>; label?: (key: string) => string }) {
  const entries = Object.entries(counts).filter(([, n]) => n > 0);
  if (entries.length === 0) return <>–</>;
  return (
    <Box component="ul" sx={{ m: 0, p: 0, listStyle: 'none' }}>
      {entries.map(([key, n]) => (
        <li key={key} data-key={key} data-value={n}>
          {label ? label(key) : key}: {n}
        </li>
      ))}
    </Box>
  );
}

function Build({ onBuilt }: { onBuilt: (dataset: Dataset) => void }) {
  const a = useAdminMessages();
  const kindId = useId();
  const [name, setName] = useState('');
  const [kind, setKind] = useState<'train' | 'test'>('train');
  const [from, setFrom] = useState('');
  const [to, setTo] = useState(today);
  const build = useMutation({
    mutationFn: () =>
      unwrap(
        Admin.createDataset({
          body: {
            name: name.trim(),
            kind,
            source: 'feedback',
            ...(from ? { date_from: from } : {}),
            ...(to ? { date_to: to } : {}),
            ...(from || to ? { tz: browserTimeZone() } : {}),
          } as Parameters<typeof Admin.createDataset>[0]['body'],
        }),
      ),
    onSuccess: (dataset) => {
      setName('');
      onBuilt(dataset);
    },
  });
  return (
    <SectionCard title={a.loop.build} help={a.loop.buildHelp}>
      <Box
        component="form"
        onSubmit={(e) => {
          e.preventDefault();
          if (name.trim()) build.mutate();
        }}
        sx={{ display: 'grid', gap: 2, maxWidth: 560 }}
      >
        <TextField label={a.loop.name} value={name} onChange={(e) => setName(e.target.value)} required slotProps={{ htmlInput: { maxLength: 100, 'data-testid': 'dataset-name' } }} />
        <FormControl>
          <FormLabel id={kindId}>{a.loop.kind}</FormLabel>
          <RadioGroup row aria-labelledby={kindId} value={kind} onChange={(e) => setKind(e.target.value as 'train' | 'test')}>
            <FormControlLabel value="train" control={<Radio />} label={a.loop.kinds.train} />
            <FormControlLabel value="test" control={<Radio />} label={a.loop.kinds.test} />
          </RadioGroup>
        </FormControl>
        <Box sx={{ display: 'flex', gap: 2, flexWrap: 'wrap' }}>
          <TextField type="date" label={a.loop.from} value={from} onChange={(e) => setFrom(e.target.value)} slotProps={{ inputLabel: { shrink: true } }} />
          <TextField type="date" label={a.loop.cutoff} value={to} onChange={(e) => setTo(e.target.value)} slotProps={{ inputLabel: { shrink: true }, htmlInput: { 'data-testid': 'dataset-cutoff' } }} />
        </Box>
        <Box>
          <Button type="submit" variant="contained" disabled={!name.trim() || build.isPending}>
            {a.loop.submit}
          </Button>
        </Box>
        <FormError error={build.error} />
      </Box>
    </SectionCard>
  );
}

function DownloadItems({ dataset }: { dataset: Dataset }) {
  const a = useAdminMessages();
  const download = useMutation({
    mutationFn: async () => {
      const result = await Admin.exportDataset({ path: { dataset_id: dataset.id }, parseAs: 'stream' });
      if (!result.response?.ok || !result.data) await unwrap(Promise.resolve(result));
      const { blob } = await readCsv(result.data as unknown as ReadableStream<Uint8Array>);
      saveBlob(blob, `dataset-${dataset.id}.csv`);
    },
  });
  return (
    <>
      <Button size="small" onClick={() => download.mutate()} disabled={download.isPending} aria-label={`${a.loop.download}: ${dataset.name}`}>
        {a.loop.download}
      </Button>
      <FormError error={download.error} />
    </>
  );
}

export default function DatasetsPage() {
  const a = useAdminMessages();
  const { f, dateTime } = useI18n();
  const queryClient = useQueryClient();
  const datasets = useDatasets();
  const [built, setBuilt] = useState<Dataset | undefined>();
  return (
    <Stack spacing={2} component="section" aria-labelledby="datasets-title">
      <Typography variant="h4" component="h1" id="datasets-title">
        {a.loop.datasets}
      </Typography>
      {built && (
        <Alert severity="success" data-testid="notice" onClose={() => setBuilt(undefined)}>
          {f(a.loop.created, { name: built.name, items: built.items })}
        </Alert>
      )}
      <QueryStates query={datasets} empty={a.loop.empty}>
        {(rows) => (
          <DataTable
            framed
            label={a.loop.datasetsTable}
            testId="datasets-table"
            columns={[a.loop.name, a.loop.kind, a.loop.source, { label: a.loop.items, numeric: true }, a.loop.byClass, a.loop.bySplit, a.loop.excluded, a.loop.range, a.loop.fingerprint]}
          >
            {rows.map((d) => (
              <TableRow key={d.id} data-testid="dataset-row" data-id={d.id} data-kind={d.kind} data-locked={String(d.locked)} data-name={d.name}>
                <TableCell sx={{ overflowWrap: 'anywhere' }}>
                  {d.name}
                  <Typography variant="body2" sx={{ color: 'text.secondary' }}>
                    {dateTime(d.created_at)} · <CreatedBy id={d.created_by} />
                  </Typography>
                  <DownloadItems dataset={d} />
                </TableCell>
                <TableCell>
                  {a.loop.kinds[d.kind]}
                  {d.locked && <Chip size="small" variant="outlined" color="warning" label={`🔒 ${a.loop.locked}`} title={a.loop.lockedHelp} data-testid="locked" sx={{ ml: 1 }} />}
                </TableCell>
                <TableCell>{a.loop.sources[d.source]}</TableCell>
                <TableCell align="right" data-testid="items" data-value={d.items}>
                  {d.items}
                </TableCell>
                <TableCell data-testid="by-class">
                  <Counts counts={d.by_class} />
                </TableCell>
                <TableCell>
                  <Counts counts={d.by_split} />
                  {d.unlinked_items > 0 && <Typography variant="body2">{f(a.loop.unlinked, { n: d.unlinked_items })}</Typography>}
                </TableCell>
                <TableCell>
                  <Counts counts={d.excluded} />
                </TableCell>
                <TableCell>
                  {d.date_from ? dateTime(d.date_from) : '…'} – {d.date_to ? dateTime(d.date_to) : '…'}
                </TableCell>
                <TableCell sx={{ fontFamily: 'monospace' }} title={d.sha256}>
                  {short(d.sha256)}
                </TableCell>
              </TableRow>
            ))}
          </DataTable>
        )}
      </QueryStates>
      <Build
        onBuilt={(dataset) => {
          setBuilt(dataset);
          void queryClient.invalidateQueries({ queryKey: DATASETS_KEY });
        }}
      />
    </Stack>
  );
}
