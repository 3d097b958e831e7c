/**
 * The admin screens' filters <-> the URL's query string (shareable links; the back button
 * walks through them), and <-> the API's query parameters. Malformed values are dropped,
 * never sent.
 */
import type { AdminExportAuditData, AdminListAuditData, AuditEvent } from '@ocupredict/client';

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const CURSOR = /^\d{1,19}$/;

function validDate(value: string | null): string | undefined {
  if (value === null || !DATE.test(value)) return undefined;
  const parsed = new Date(`${value}T00:00:00Z`);
  return Number.isNaN(parsed.getTime()) || parsed.toISOString().slice(0, 10) !== value ? undefined : value;
}

function text(value: string | null, max: number): string | undefined {
  const trimmed = value?.trim();
  return trimmed ? trimmed.slice(0, max) : undefined;
}

function positiveInt(value: string | null, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === null || !/^\d{1,16}$/.test(value)) return undefined;
  const n = Number(value);
  return n >= 1 && n <= max ? n : undefined;
}

// ------------------------------------------------------------------------------ users

export const USER_PAGE_SIZE = 20;

export interface UserFilters {
  q?: string;
  page: number;
}

export function userFiltersFromSearch(params: URLSearchParams): UserFilters {
  const filters: UserFilters = { page: positiveInt(params.get('page'), 1_000_000) ?? 1 };
  const q = text(params.get('q'), 254);
  if (q) filters.q = q;
  return filters;
}

export function searchFromUserFilters(filters: UserFilters): URLSearchParams {
  const params = new URLSearchParams();
  if (filters.q) params.set('q', filters.q);
  if (filters.page > 1) params.set('page', String(filters.page));
  return params;
}

// ------------------------------------------------------------------------------ audit

/** Every action the API records (AuditEvent.action); src/admin/filters.test.ts checks
 * this list against docs/openapi.json. */
export const AUDIT_ACTIONS: readonly AuditEvent['action'][] = [
  'auth.login',
  'auth.login_failed',
  'auth.logout',
  'auth.refresh_reuse',
  'auth.password_change',
  'auth.password_reset',
  'auth.verify',
  'prediction.view',
  'prediction.image_view',
  'prediction.heatmap_view',
  'prediction.feedback',
  'prediction.delete',
  'model.register',
  'model.activate',
  'model.retire',
  'user.disable',
  'user.enable',
  'user.role',
  'audit.prune',
  'dataset.create',
  'training.start',
  'training.cancel',
  'training.finish',
  'training.fail',
];

export const TARGET_TYPES = ['user', 'prediction', 'model', 'dataset', 'training_job'] as const;
export const AUDIT_PAGE_SIZE = 25;

export interface AuditFilters {
  actorId?: number;
  action?: AuditEvent['action'];
  targetType?: string;
  targetId?: string;
  dateFrom?: string;
  dateTo?: string;
  /** The keyset cursor of the page shown (absent: the newest page). */
  cursor?: string;
}

export function auditFiltersFromSearch(params: URLSearchParams): AuditFilters {
  const filters: AuditFilters = {};
  const actorId = positiveInt(params.get('actor'));
  if (actorId) filters.actorId = actorId;
  const action = params.get('action');
  if (action && (AUDIT_ACTIONS as readonly string[]).includes(action)) filters.action = action as AuditEvent['action'];
  const targetType = params.get('target_type');
  if (targetType && /^[a-z_]{1,20}$/.test(targetType)) filters.targetType = targetType;
  const targetId = text(params.get('target_id'), 64);
  if (targetId) filters.targetId = targetId;
  const dateFrom = validDate(params.get('from'));
  if (dateFrom) filters.dateFrom = dateFrom;
  const dateTo = validDate(params.get('to'));
  if (dateTo && !(dateFrom && dateFrom > dateTo)) filters.dateTo = dateTo;
  const cursor = params.get('cursor');
  if (cursor && CURSOR.test(cursor)) filters.cursor = cursor;
  return filters;
}

export function searchFromAuditFilters(filters: AuditFilters): URLSearchParams {
  const params = new URLSearchParams();
  const put = (key: string, value: string | number | undefined) => {
    if (value !== undefined && value !== '') params.set(key, String(value));
  };
  put('actor', filters.actorId);
  put('action', filters.action);
  put('target_type', filters.targetType);
  put('target_id', filters.targetId);
  put('from', filters.dateFrom);
  put('to', filters.dateTo);
  put('cursor', filters.cursor);
  return params;
}

/** A changed filter starts again from the newest page; cleared filters disappear. */
export function withAuditFilter(filters: AuditFilters, change: Partial<AuditFilters>): AuditFilters {
  const next: AuditFilters = { ...filters, cursor: undefined, ...change };
  for (const key of Object.keys(next) as (keyof AuditFilters)[]) {
    if (next[key] === undefined || next[key] === '') delete next[key];
  }
  return next;
}

export function hasAuditFilters(filters: AuditFilters): boolean {
  return [filters.actorId, filters.action, filters.targetType, filters.targetId, filters.dateFrom, filters.dateTo].some(
    (v) => v !== undefined,
  );
}

type ExportQuery = NonNullable<AdminExportAuditData['query']>;
type ListQuery = NonNullable<AdminListAuditData['query']>;

/** The filters as the export takes them (the list takes the same plus cursor and limit). */
export function auditExportQuery(filters: AuditFilters, tz: string): ExportQuery {
  const query: ExportQuery = {};
  if (filters.actorId) query.actor_id = filters.actorId;
  if (filters.action) query.action = filters.action;
  if (filters.targetType) query.target_type = filters.targetType;
  if (filters.targetId) query.target_id = filters.targetId;
  if (filters.dateFrom) query.date_from = filters.dateFrom;
  if (filters.dateTo) query.date_to = filters.dateTo;
  if (filters.dateFrom || filters.dateTo) query.tz = tz;
  return query;
}

export function auditListQuery(filters: AuditFilters, tz: string, limit = AUDIT_PAGE_SIZE): ListQuery {
  const query: ListQuery = { ...auditExportQuery(filters, tz), limit };
  if (filters.cursor) query.cursor = filters.cursor;
  return query;
}

/** One row of an event's old/new table. */
export interface Change {
  field: string;
  old: unknown;
  new: unknown;
  changed: boolean;
}

/** The fields of an event's `old` and `new`, in the order they first appear, each with
 * both values (undefined where one side lacks it) and whether it changed. */
export function eventChanges(event: Pick<AuditEvent, 'old' | 'new'>): Change[] {
  const before = event.old ?? {};
  const after = event.new ?? {};
  const fields = [...new Set([...Object.keys(before), ...Object.keys(after)])];
  return fields.map((field) => {
    const old = before[field];
    const value = after[field];
    return { field, old, new: value, changed: JSON.stringify(old) !== JSON.stringify(value) };
  });
}

/** A value of an event as text: strings as they are, anything else as JSON. */
export function showValue(value: unknown): string {
  if (value === undefined) return '–';
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}
