/**
 * The learning loop as the console shows it: a job's progress in words, each gate's
 * verdict with its numbers, and whether a trained version may be promoted (the API decides;
 * this says why not before the admin tries, from the same rules: every gate passed, then at
 * least the recipe's number of live cases compared in shadow).
 */
import type { Evaluation, GateResult, TrainingJob } from '@ocupredict/client';

export const UPPER_BOUND_GATES = new Set(['ece_max']);
export const ACTIVE_JOB_STATUSES: readonly TrainingJob['status'][] = ['queued', 'running'];

export function isActive(job: Pick<TrainingJob, 'status'>): boolean {
  return ACTIVE_JOB_STATUSES.includes(job.status);
}

/** A gate result's name split into the recipe's gate and its class, if per class
 * (`recall_diff_lower_bound:glaucoma`). */
export function gateName(name: string): { gate: string; classCode?: string } {
  const at = name.indexOf(':');
  return at < 0 ? { gate: name } : { gate: name.slice(0, at), classCode: name.slice(at + 1) };
}

/** The comparison a gate makes: "≤" for an upper bound (ECE), else "≥". */
export function gateComparison(name: string): '≤' | '≥' {
  return UPPER_BOUND_GATES.has(gateName(name).gate) ? '≤' : '≥';
}

export interface Promotion {
  allowed: boolean;
  /** Why not: the failed gates first, then too few shadow comparisons. */
  reason?: 'GATES_NOT_MET' | 'SHADOW_INSUFFICIENT';
  failed: GateResult[];
  compared: number;
  needed: number;
}

export function promotion(evaluation: Pick<Evaluation, 'passed' | 'gates' | 'min_shadow_cases'>, compared: number): Promotion {
  const failed = evaluation.gates.filter((g) => !g.passed);
  const base = { failed, compared, needed: evaluation.min_shadow_cases };
  if (!evaluation.passed || failed.length > 0) return { ...base, allowed: false, reason: 'GATES_NOT_MET' };
  if (compared < evaluation.min_shadow_cases) return { ...base, allowed: false, reason: 'SHADOW_INSUFFICIENT' };
  return { ...base, allowed: true };
}

/** A job's progress as a share 0..1 of its recipe's batches (null: not started). */
export function progressShare(job: Pick<TrainingJob, 'status' | 'progress'>): number | null {
  if (job.status === 'succeeded') return 1;
  const p = job.progress;
  if (!p || !p.epochs || !p.steps) return null;
  const done = Math.max(0, p.epoch - 1) * p.steps + p.step;
  return Math.min(1, done / (p.epochs * p.steps));
}

/** Seconds as "1 h 05 min", "4 min 10 s" or "35 s". */
export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '–';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  if (h) return `${h} h ${String(m).padStart(2, '0')} min`;
  if (m) return `${m} min ${String(rest).padStart(2, '0')} s`;
  return `${rest} s`;
}

/** A short fingerprint of a sha256 for tables (the full one in a title). */
export function short(sha256: string | null | undefined, n = 12): string {
  return sha256 ? sha256.slice(0, n) : '–';
}
