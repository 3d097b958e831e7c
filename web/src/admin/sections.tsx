/** The admin screens' shared shapes: a titled card section, a figure card, a table with its
 * header row, and a list query's loading / error / empty states. */
import { Card, CardContent, Table, TableBody, TableCell, TableContainer, TableHead, TableRow, Typography } from '@mui/material';
import type { UseQueryResult } from '@tanstack/react-query';
import { useId } from 'react';
import type { ReactNode } from 'react';

import { Empty, Loading } from '../components/states';
import { AdminError } from './components';

/** A card that is a section of the page, named by its heading (h2, or h3 inside an h2's part). */
export function SectionCard({ title, help, level = 'h2', testId, children }: { title: string; help?: ReactNode; level?: 'h2' | 'h3'; testId?: string; children: ReactNode }) {
  const id = useId();
  return (
    <Card variant="outlined" component="section" aria-labelledby={id} data-testid={testId}>
      <CardContent>
        <Typography variant="h6" component={level} id={id} gutterBottom>
          {title}
        </Typography>
        {help && (
          <Typography variant="body2" sx={{ mb: 2 }}>
            {help}
          </Typography>
        )}
        {children}
      </CardContent>
    </Card>
  );
}

/** One number in a card: `raw` (the API's value) in data-value for the tests to compare. */
export function Figure({ label, value, raw, testId, note }: { label: string; value: string; raw: number | null | undefined; testId: string; note?: ReactNode }) {
  return (
    <Card variant="outlined" sx={{ flex: '1 1 160px' }}>
      <CardContent>
        <Typography variant="body2" component="h3" sx={{ color: 'text.secondary' }}>
          {label}
        </Typography>
        <Typography variant="h5" component="p" data-testid={testId} data-value={raw ?? ''}>
          {value}
        </Typography>
        {typeof note === 'string' ? <Typography variant="body2">{note}</Typography> : note}
      </CardContent>
    </Card>
  );
}

/** A header cell: its text, right-aligned when it heads numbers, or a checkbox column's. */
export type Column = string | { label: ReactNode; numeric?: boolean; checkbox?: boolean; monospace?: boolean };

/** A small table that scrolls sideways on a narrow screen: the header row from `columns`,
 * the rows as children. `framed`: a list of its own in an outlined card (with `footer`,
 * e.g. its pagination). */
export function DataTable({ label, testId, columns, framed = false, footer, children }: { label: string; testId?: string; columns: Column[]; framed?: boolean; footer?: ReactNode; children: ReactNode }) {
  const table = (
    <TableContainer>
      <Table size="small" aria-label={label} data-testid={testId}>
        <TableHead>
          <TableRow>
            {columns.map((column, i) => {
              const { label: text, numeric, checkbox, monospace } = typeof column === 'string' ? { label: column } : column;
              return (
                <TableCell key={i} align={numeric ? 'right' : undefined} padding={checkbox ? 'checkbox' : undefined} sx={monospace ? { fontFamily: 'monospace' } : undefined}>
                  {text}
                </TableCell>
              );
            })}
          </TableRow>
        </TableHead>
        <TableBody>{children}</TableBody>
      </Table>
    </TableContainer>
  );
  if (!framed) return table;
  return (
    <Card variant="outlined">
      <CardContent sx={{ p: 0, '&:last-child': { pb: 0 } }}>
        {table}
        {footer}
      </CardContent>
    </Card>
  );
}

/** A list query's states: loading, its error (403 as "not allowed"), `empty` when there is
 * nothing, else `children` with the data. */
export function QueryStates<T>({ query, isEmpty = (data) => Array.isArray(data) && data.length === 0, empty, children }: { query: UseQueryResult<T>; isEmpty?: (data: T) => boolean; empty: ReactNode; children: (data: T) => ReactNode }) {
  if (query.isPending) return <Loading />;
  if (query.isError) return <AdminError error={query.error} onRetry={() => void query.refetch()} />;
  if (isEmpty(query.data)) return <Empty>{empty}</Empty>;
  return <>{children(query.data)}</>;
}
