import type { ModelMetrics } from '@ocupredict/client';
import { describe, expect, it } from 'vitest';

import { classLabels, compareClasses, compareMetrics, confusionMatrix, decimal, eceOfPoints, pct, points, reliabilityPoints } from './evidence';

// The hand-computed case of tests/test_registry_metrics.py, as the API returns it.
const METRICS: ModelMetrics = {
  version: 'aaaaaaaaaaaa',
  range: { start: null, end: null },
  predictions: 12,
  with_feedback: 10,
  correct: 5,
  accuracy: 0.5,
  accuracy_ci95: [0.236594, 0.763406],
  per_class: {
    glaucoma: { precision: 2 / 3, recall: 2 / 3, support: 3 },
    diabetic_retinopathy: { precision: 0.5, recall: 1, support: 1 },
    normal: { precision: 1 / 3, recall: 1 / 3, support: 3 },
    cataract: { precision: 0.5, recall: 0.5, support: 2 },
  },
  confusion: [
    { predicted: 'cataract', confirmed: 'cataract', count: 1 },
    { predicted: 'cataract', confirmed: 'glaucoma', count: 1 },
    { predicted: 'diabetic_retinopathy', confirmed: 'diabetic_retinopathy', count: 1 },
    { predicted: 'diabetic_retinopathy', confirmed: 'normal', count: 1 },
    { predicted: 'glaucoma', confirmed: 'glaucoma', count: 2 },
    { predicted: 'glaucoma', confirmed: 'normal', count: 1 },
    { predicted: 'normal', confirmed: null, count: 1 },
    { predicted: 'normal', confirmed: 'cataract', count: 1 },
    { predicted: 'normal', confirmed: 'normal', count: 1 },
  ],
  ece: 0.327,
  reliability: [
    { low: 0.3, high: 0.4, count: 1, confidence: 0.35, accuracy: 0 },
    { low: 0.4, high: 0.5, count: 1, confidence: 0.45, accuracy: 0 },
    { low: 0.5, high: 0.6, count: 1, confidence: 0.55, accuracy: 0 },
    { low: 0.6, high: 0.7, count: 2, confidence: 0.635, accuracy: 0 },
    { low: 0.7, high: 0.8, count: 1, confidence: 0.75, accuracy: 1 },
    { low: 0.8, high: 0.9, count: 2, confidence: 0.865, accuracy: 1 },
    { low: 0.9, high: 1, count: 2, confidence: 0.935, accuracy: 1 },
  ],
  shadow: null,
};

const CODES = ['glaucoma', 'diabetic_retinopathy', 'normal', 'cataract'];

describe('confusion matrix', () => {
  it('pivots the cells: rows predicted, columns confirmed, in the manifest’s order, "no class" last', () => {
    const m = confusionMatrix(METRICS.confusion, CODES);
    expect(m.rows).toEqual(CODES);
    expect(m.columns).toEqual([...CODES, null]);
    expect(m.counts).toEqual([
      [2, 0, 1, 0, 0],
      [0, 1, 1, 0, 0],
      [0, 0, 1, 1, 1],
      [1, 0, 0, 1, 0],
    ]);
    expect(m.total).toBe(METRICS.with_feedback);
    expect(m.rowTotals).toEqual([3, 2, 3, 2]);
    // The confirmed columns' totals are the per-class supports.
    CODES.forEach((code, j) => expect(m.columnTotals[j]).toBe(METRICS.per_class[code]?.support));
    // The diagonal is the correct ones.
    expect(CODES.reduce((sum, _, i) => sum + (m.counts[i]?.[i] ?? 0), 0)).toBe(METRICS.correct);
  });

  it('a class the manifest lacks is added; no "no class" column without such cells', () => {
    const m = confusionMatrix([{ predicted: 'other', confirmed: 'normal', count: 4 }], ['normal']);
    expect(m.rows).toEqual(['normal', 'other']);
    expect(m.columns).toEqual(['normal', 'other']);
    expect(m.counts).toEqual([
      [0, 0],
      [4, 0],
    ]);
    expect(confusionMatrix([], CODES).total).toBe(0);
  });
});

describe('reliability diagram', () => {
  it('the API’s bins as points; their weighted gaps are the API’s ECE', () => {
    const pts = reliabilityPoints(METRICS);
    expect(pts.map((p) => p.bin)).toEqual(['30–40 %', '40–50 %', '50–60 %', '60–70 %', '70–80 %', '80–90 %', '90–100 %']);
    expect(pts.reduce((s, p) => s + p.weight, 0)).toBeCloseTo(1, 12);
    expect(eceOfPoints(pts)).toBeCloseTo(METRICS.ece ?? NaN, 9);
    expect(pts[3]).toMatchObject({ count: 2, weight: 0.2, gap: 0.635 });
    expect(eceOfPoints([])).toBeNull();
  });
});

describe('two versions side by side', () => {
  const better: ModelMetrics = {
    ...METRICS,
    version: 'bbbbbbbbbbbb',
    predictions: 20,
    accuracy: 0.75,
    ece: 0.1,
    per_class: { ...METRICS.per_class, normal: { precision: 0.5, recall: 0.8, support: 5 } },
    shadow: { compared: 8, agreement: 0.625, accuracy: 0.5, judged: 6 },
  };

  it('B − A for each headline number, null where one side has none', () => {
    const rows = Object.fromEntries(compareMetrics(METRICS, better).map((r) => [r.metric, r]));
    expect(rows.predictions).toMatchObject({ a: 12, b: 20, difference: 8, higherIsBetter: null });
    expect(rows.accuracy?.difference).toBeCloseTo(0.25, 12);
    expect(rows.ece).toMatchObject({ a: 0.327, b: 0.1, higherIsBetter: false });
    expect(rows.ece?.difference).toBeCloseTo(-0.227, 12);
    expect(rows.shadow_agreement).toMatchObject({ a: null, b: 0.625, difference: null });
  });

  it('per class: both sides, the union of classes', () => {
    const rows = compareClasses(METRICS, { ...better, per_class: { normal: { precision: 1, recall: 1, support: 1 }, extra: { precision: null, recall: null, support: 0 } } });
    expect(rows.map((r) => r.code)).toEqual([...CODES, 'extra']);
    expect(rows.find((r) => r.code === 'glaucoma')?.b).toBeUndefined();
  });
});

describe('numbers as shown', () => {
  it('percentages, points and decimals in each language', () => {
    expect(pct(0.236594, 'en')).toBe('23.7%');
    // Peru writes decimals with a point, like English.
    expect(pct(0.236594, 'es')).toMatch(/^23[.,]7\s?%$/);
    expect(pct(null, 'es')).toBe('–');
    expect(points(0.025, 'en')).toBe('+2.5 pp');
    expect(points(-0.1, 'es')).toMatch(/^-10[.,]0 pp$/);
    expect(points(0, 'en')).toBe('0.0 pp');
    expect(decimal(0.327, 'en')).toBe('0.327');
    expect(decimal(0.327, 'es')).toMatch(/^0[.,]327$/);
  });

  it('class labels from the manifest in the language, the code when missing', () => {
    const version = { manifest: { classes: [{ code: 'normal', es: 'Normal', en: 'Normal' }, { code: 'glaucoma', es: 'Glaucoma' }, { nope: 1 }] } };
    expect(classLabels(version, 'en')).toEqual({ normal: 'Normal', glaucoma: 'glaucoma' });
    expect(classLabels({ manifest: {} }, 'es')).toEqual({});
    expect(classLabels(undefined, 'es')).toEqual({});
  });
});
