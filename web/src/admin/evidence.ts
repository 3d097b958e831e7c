/**
 * The evidence of a model version as the console shows it: the API's numbers
 * (GET /admin/models/{version}/metrics) arranged, never recomputed from anything else.
 * The confusion matrix is pivoted from its cells; the reliability diagram's points are the
 * API's bins; two versions are set side by side with their differences.
 */
import type { ModelMetrics, ModelVersion } from '@ocupredict/client';

import type { Lang } from '../i18n/messages';

/** A class of a version's manifest: its code and its label in the given language. */
export function classLabels(version: Pick<ModelVersion, 'manifest'> | undefined, lang: Lang): Record<string, string> {
  const labels: Record<string, string> = {};
  const classes = (version?.manifest as { classes?: unknown } | undefined)?.classes;
  if (Array.isArray(classes)) {
    for (const entry of classes) {
      if (entry && typeof entry === 'object' && typeof (entry as { code?: unknown }).code === 'string') {
        const c = entry as { code: string; es?: unknown; en?: unknown };
        const label = c[lang];
        labels[c.code] = typeof label === 'string' && label ? label : c.code;
      }
    }
  }
  return labels;
}

export interface Matrix {
  /** Predicted classes, the rows. */
  rows: string[];
  /** Confirmed classes, the columns; `null` is "incorrect without a class". */
  columns: (string | null)[];
  counts: number[][];
  rowTotals: number[];
  columnTotals: number[];
  total: number;
}

/**
 * The confusion matrix from the API's cells: rows are the predicted classes and columns
 * the confirmed ones, both in the order of `codes` (the manifest) and then any other class
 * the cells name; a column for "no class" only when some cell has one.
 */
export function confusionMatrix(cells: ModelMetrics['confusion'], codes: string[]): Matrix {
  const classes = [...codes];
  for (const cell of cells) {
    for (const code of [cell.predicted, cell.confirmed]) {
      if (code !== null && !classes.includes(code)) classes.push(code);
    }
  }
  const columns: (string | null)[] = [...classes];
  if (cells.some((c) => c.confirmed === null)) columns.push(null);
  const counts = classes.map(() => columns.map(() => 0));
  for (const cell of cells) {
    const row = classes.indexOf(cell.predicted);
    const column = columns.indexOf(cell.confirmed);
    const line = counts[row];
    if (line && column >= 0) line[column] = (line[column] ?? 0) + cell.count;
  }
  const rowTotals = counts.map((line) => line.reduce((a, b) => a + b, 0));
  const columnTotals = columns.map((_, j) => counts.reduce((a, line) => a + (line[j] ?? 0), 0));
  return { rows: classes, columns, counts, rowTotals, columnTotals, total: rowTotals.reduce((a, b) => a + b, 0) };
}

export interface ReliabilityPoint {
  /** The bin as "60–70 %". */
  bin: string;
  low: number;
  high: number;
  confidence: number;
  accuracy: number;
  count: number;
  /** The bin's share of the predictions with feedback. */
  weight: number;
  /** |accuracy - confidence|: the bin's gap from the diagonal. */
  gap: number;
}

export function reliabilityPoints(metrics: Pick<ModelMetrics, 'reliability' | 'with_feedback'>): ReliabilityPoint[] {
  const n = metrics.with_feedback;
  return metrics.reliability.map((b) => ({
    bin: `${Math.round(b.low * 100)}–${Math.round(b.high * 100)} %`,
    low: b.low,
    high: b.high,
    confidence: b.confidence,
    accuracy: b.accuracy,
    count: b.count,
    weight: n ? b.count / n : 0,
    gap: Math.abs(b.accuracy - b.confidence),
  }));
}

/**
 * The ECE the diagram shows: the bins' gaps weighted by their share. It equals the API's
 * `ece` (the same definition over the same bins); the page shows the API's and the unit
 * test holds the two together.
 */
export function eceOfPoints(points: ReliabilityPoint[]): number | null {
  if (points.length === 0) return null;
  return points.reduce((sum, p) => sum + p.weight * p.gap, 0);
}

export type Metric = 'predictions' | 'with_feedback' | 'accuracy' | 'ece' | 'shadow_agreement' | 'shadow_accuracy';

export interface ComparisonRow {
  metric: Metric;
  a: number | null;
  b: number | null;
  /** b - a where both are known. */
  difference: number | null;
  /** Whether a larger value is better (accuracy) or worse (ECE); null: neither (counts). */
  higherIsBetter: boolean | null;
}

function value(metrics: ModelMetrics, metric: Metric): number | null {
  switch (metric) {
    case 'predictions':
      return metrics.predictions;
    case 'with_feedback':
      return metrics.with_feedback;
    case 'accuracy':
      return metrics.accuracy ?? null;
    case 'ece':
      return metrics.ece ?? null;
    case 'shadow_agreement':
      return metrics.shadow?.agreement ?? null;
    case 'shadow_accuracy':
      return metrics.shadow?.accuracy ?? null;
  }
}

const BETTER: Record<Metric, boolean | null> = {
  predictions: null,
  with_feedback: null,
  accuracy: true,
  ece: false,
  shadow_agreement: null,
  shadow_accuracy: true,
};

/** Two versions' headline numbers side by side, with B − A. */
export function compareMetrics(a: ModelMetrics, b: ModelMetrics): ComparisonRow[] {
  return (Object.keys(BETTER) as Metric[]).map((metric) => {
    const x = value(a, metric);
    const y = value(b, metric);
    return { metric, a: x, b: y, difference: x !== null && y !== null ? y - x : null, higherIsBetter: BETTER[metric] };
  });
}

/** Per class, the two versions' recall and precision side by side. */
export function compareClasses(a: ModelMetrics, b: ModelMetrics): { code: string; a: ModelMetrics['per_class'][string] | undefined; b: ModelMetrics['per_class'][string] | undefined }[] {
  const codes = [...new Set([...Object.keys(a.per_class), ...Object.keys(b.per_class)])];
  return codes.map((code) => ({ code, a: a.per_class[code], b: b.per_class[code] }));
}

/** A share as a percentage with `digits` decimals in the language's format; "–" for null. */
export function pct(value: number | null | undefined, lang: Lang, digits = 1): string {
  if (value === null || value === undefined || Number.isNaN(value)) return '–';
  return new Intl.NumberFormat(lang === 'es' ? 'es-PE' : 'en-US', {
    style: 'percent',
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).format(value);
}

/** A signed difference of shares in percentage points ("+2.5 pp"). */
export function points(value: number | null, lang: Lang): string {
  if (value === null) return '–';
  const text = new Intl.NumberFormat(lang === 'es' ? 'es-PE' : 'en-US', {
    minimumFractionDigits: 1,
    maximumFractionDigits: 1,
    signDisplay: 'exceptZero',
  }).format(value * 100);
  return `${text} pp`;
}

/** An ECE (a share, shown to 3 decimals). */
export function decimal(value: number | null | undefined, lang: Lang, digits = 3): string {
  if (value === null || value === undefined) return '–';
  return new Intl.NumberFormat(lang === 'es' ? 'es-PE' : 'en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).format(value);
}
