/**
 * The history's filters, sort and page <-> the URL's query string, so a filtered list is a
 * shareable link and the back button walks through filter changes. Unknown or malformed
 * values are dropped (the defaults apply), never sent to the API.
 */
import type { HistoryListData } from '@ocupredict/client';

export const SORTS = ['created_at', 'predicted_class', 'feedback', 'filename', 'id'] as const;
export const FEEDBACKS = ['correct', 'incorrect', 'none'] as const;
export const RECOMMENDATIONS = ['refer', 'routine', 'inconclusive', 'retake_image'] as const;
export const PAGE_SIZES = [10, 20, 50, 100] as const;

export type Sort = (typeof SORTS)[number];
export type FeedbackFilter = (typeof FEEDBACKS)[number];
export type RecommendationFilter = (typeof RECOMMENDATIONS)[number];

export interface HistoryFilters {
  page: number;
  pageSize: number;
  sort: Sort;
  order: 'asc' | 'desc';
  predictedClass?: string;
  feedback?: FeedbackFilter;
  recommendation?: RecommendationFilter;
  gradable?: boolean;
  patientRef?: string;
  q?: string;
  dateFrom?: string;
  dateTo?: string;
}

export const DEFAULT_FILTERS: HistoryFilters = {
  page: 1,
  pageSize: 20,
  sort: 'created_at',
  order: 'desc',
};

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const CLASS_CODE = /^[a-z][a-z0-9_]{0,63}$/;

function oneOf<T extends string>(values: readonly T[], value: string | null): T | undefined {
  return value !== null && (values as readonly string[]).includes(value) ? (value as T) : undefined;
}

function text(value: string | null, max: number): string | undefined {
  const trimmed = value?.trim();
  return trimmed ? trimmed.slice(0, max) : undefined;
}

function validDate(value: string | null): string | undefined {
  if (value === null || !DATE.test(value)) {
    return undefined;
  }
  const parsed = new Date(`${value}T00:00:00Z`);
  return Number.isNaN(parsed.getTime()) || parsed.toISOString().slice(0, 10) !== value
    ? undefined
    : value;
}

export function filtersFromSearch(params: URLSearchParams): HistoryFilters {
  const page = Number(params.get('page'));
  const pageSize = Number(params.get('page_size'));
  const filters: HistoryFilters = {
    page: Number.isInteger(page) && page >= 1 && page <= 1_000_000 ? page : DEFAULT_FILTERS.page,
    pageSize: (PAGE_SIZES as readonly number[]).includes(pageSize) ? pageSize : DEFAULT_FILTERS.pageSize,
    sort: oneOf(SORTS, params.get('sort')) ?? DEFAULT_FILTERS.sort,
    order: oneOf(['asc', 'desc'] as const, params.get('order')) ?? DEFAULT_FILTERS.order,
  };
  const predictedClass = params.get('class');
  if (predictedClass !== null && CLASS_CODE.test(predictedClass)) {
    filters.predictedClass = predictedClass;
  }
  const feedback = oneOf(FEEDBACKS, params.get('feedback'));
  if (feedback) filters.feedback = feedback;
  const recommendation = oneOf(RECOMMENDATIONS, params.get('recommendation'));
  if (recommendation) filters.recommendation = recommendation;
  const gradable = params.get('gradable');
  if (gradable === 'true' || gradable === 'false') filters.gradable = gradable === 'true';
  const patientRef = text(params.get('patient'), 64);
  if (patientRef) filters.patientRef = patientRef;
  const q = text(params.get('q'), 100);
  if (q) filters.q = q;
  const dateFrom = validDate(params.get('from'));
  if (dateFrom) filters.dateFrom = dateFrom;
  const dateTo = validDate(params.get('to'));
  if (dateTo) filters.dateTo = dateTo;
  if (filters.dateFrom && filters.dateTo && filters.dateFrom > filters.dateTo) {
    delete filters.dateTo;
  }
  return filters;
}

/** The query string of `filters`; defaults are left out, so links stay short. */
export function searchFromFilters(filters: HistoryFilters): URLSearchParams {
  const params = new URLSearchParams();
  const put = (key: string, value: string | number | boolean | undefined) => {
    if (value !== undefined && value !== '') params.set(key, String(value));
  };
  put('class', filters.predictedClass);
  put('feedback', filters.feedback);
  put('recommendation', filters.recommendation);
  put('gradable', filters.gradable);
  put('patient', filters.patientRef);
  put('q', filters.q);
  put('from', filters.dateFrom);
  put('to', filters.dateTo);
  if (filters.sort !== DEFAULT_FILTERS.sort) put('sort', filters.sort);
  if (filters.order !== DEFAULT_FILTERS.order) put('order', filters.order);
  if (filters.pageSize !== DEFAULT_FILTERS.pageSize) put('page_size', filters.pageSize);
  if (filters.page !== DEFAULT_FILTERS.page) put('page', filters.page);
  return params;
}

/** Any change of a filter goes back to the first page. */
export function withFilter(filters: HistoryFilters, change: Partial<HistoryFilters>): HistoryFilters {
  const next: HistoryFilters = { ...filters, ...change, page: change.page ?? 1 };
  for (const key of Object.keys(next) as (keyof HistoryFilters)[]) {
    if (next[key] === undefined || next[key] === '') delete next[key];
  }
  return next;
}

export function hasFilters(filters: HistoryFilters): boolean {
  return [
    filters.predictedClass,
    filters.feedback,
    filters.recommendation,
    filters.gradable,
    filters.patientRef,
    filters.q,
    filters.dateFrom,
    filters.dateTo,
  ].some((value) => value !== undefined);
}

/** The history-list query for the API; dates are days in the browser's time zone `tz`. */
export function toQuery(filters: HistoryFilters, tz: string): NonNullable<HistoryListData['query']> {
  const query: NonNullable<HistoryListData['query']> = {
    page: filters.page,
    page_size: filters.pageSize,
    sort: filters.sort,
    order: filters.order,
  };
  if (filters.predictedClass) query.predicted_class = filters.predictedClass;
  if (filters.feedback) query.feedback = filters.feedback;
  if (filters.recommendation) query.recommendation = filters.recommendation;
  if (filters.gradable !== undefined) query.gradable = filters.gradable;
  if (filters.patientRef) query.patient_ref = filters.patientRef;
  if (filters.q) query.q = filters.q;
  if (filters.dateFrom) query.date_from = filters.dateFrom;
  if (filters.dateTo) query.date_to = filters.dateTo;
  if (filters.dateFrom || filters.dateTo) query.tz = tz;
  return query;
}
