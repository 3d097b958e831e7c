import { describe, expect, it } from 'vitest';

import { duration, gateComparison, gateName, isActive, progressShare, promotion, short } from './loop';

const gates = [
  { name: 'min_test_images_per_class', passed: false, value: 2, threshold: 100 },
  { name: 'recall_diff_lower_bound:glaucoma', passed: true, value: 0.01, threshold: -0.03 },
  { name: 'ece_max', passed: true, value: 0.04, threshold: 0.05 },
];

describe('promotion', () => {
  it('refused while a gate fails (GATES_NOT_MET), naming the failed gates', () => {
    const p = promotion({ passed: false, gates, min_shadow_cases: 200 }, 500);
    expect(p).toMatchObject({ allowed: false, reason: 'GATES_NOT_MET', compared: 500, needed: 200 });
    expect(p.failed.map((g) => g.name)).toEqual(['min_test_images_per_class']);
  });

  it('with every gate passed, refused until enough live cases ran in shadow', () => {
    const passing = gates.map((g) => ({ ...g, passed: true }));
    expect(promotion({ passed: true, gates: passing, min_shadow_cases: 200 }, 199)).toMatchObject({ allowed: false, reason: 'SHADOW_INSUFFICIENT', needed: 200 });
    expect(promotion({ passed: true, gates: passing, min_shadow_cases: 200 }, 200)).toMatchObject({ allowed: true, failed: [] });
  });

  it('an evaluation that says it failed is refused even if no single gate says so', () => {
    expect(promotion({ passed: false, gates: [], min_shadow_cases: 0 }, 0)).toMatchObject({ allowed: false, reason: 'GATES_NOT_MET' });
  });
});

describe('gates', () => {
  it('per-class gates name their class; ECE is an upper bound, the rest lower bounds', () => {
    expect(gateName('recall_diff_lower_bound:diabetic_retinopathy')).toEqual({ gate: 'recall_diff_lower_bound', classCode: 'diabetic_retinopathy' });
    expect(gateName('ece_max')).toEqual({ gate: 'ece_max' });
    expect(gateComparison('ece_max')).toBe('≤');
    expect(gateComparison('recall_diff_lower_bound:glaucoma')).toBe('≥');
    expect(gateComparison('min_test_images_per_class')).toBe('≥');
  });
});

describe('training progress', () => {
  const progress = { epoch: 2, epochs: 4, step: 5, steps: 10, batches_done: 15, loss: 0.7, val_loss: null, images_per_s: 3, eta_s: 25, phase: 'training' as const };

  it('the share of the recipe’s batches done', () => {
    expect(progressShare({ status: 'running', progress })).toBeCloseTo(15 / 40, 12);
    expect(progressShare({ status: 'running', progress: { ...progress, epoch: 0, step: 0 } })).toBe(0);
    expect(progressShare({ status: 'queued', progress: null })).toBeNull();
    expect(progressShare({ status: 'succeeded', progress })).toBe(1);
    expect(progressShare({ status: 'running', progress: { ...progress, steps: 0 } })).toBeNull();
  });

  it('active jobs, durations, fingerprints', () => {
    expect(isActive({ status: 'queued' })).toBe(true);
    expect(isActive({ status: 'running' })).toBe(true);
    expect(isActive({ status: 'cancelled' })).toBe(false);
    expect(duration(35)).toBe('35 s');
    expect(duration(250)).toBe('4 min 10 s');
    expect(duration(3900)).toBe('1 h 05 min');
    expect(duration(null)).toBe('–');
    expect(duration(-1)).toBe('–');
    expect(short('a'.repeat(64))).toBe('a'.repeat(12));
    expect(short(null)).toBe('–');
  });
});
