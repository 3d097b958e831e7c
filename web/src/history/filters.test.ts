import { describe, expect, it } from 'vitest';

import { DEFAULT_FILTERS, filtersFromSearch, searchFromFilters, toQuery, withFilter } from './filters';
import type { HistoryFilters } from './filters';

describe('history filters <-> URL', () => {
  it('an empty query string is the defaults, and the defaults write nothing', () => {
    expect(filtersFromSearch(new URLSearchParams())).toEqual(DEFAULT_FILTERS);
    expect(searchFromFilters(DEFAULT_FILTERS).toString()).toBe('');
  });

  it('every filter survives the round trip', () => {
    const filters: HistoryFilters = {
      page: 3,
      pageSize: 50,
      sort: 'predicted_class',
      order: 'asc',
      predictedClass: 'diabetic_retinopathy',
      feedback: 'incorrect',
      recommendation: 'retake_image',
      gradable: false,
      patientRef: 'HC-001',
      q: 'fondo ojo',
      dateFrom: '2026-01-01',
      dateTo: '2026-01-31',
    };
    const search = searchFromFilters(filters);
    expect(filtersFromSearch(new URLSearchParams(search.toString()))).toEqual(filters);
  });

  it('malformed values are dropped, not sent', () => {
    const filters = filtersFromSearch(
      new URLSearchParams(
        'page=-2&page_size=7&sort=password&order=up&class=Robert%27);DROP&feedback=maybe&recommendation=x&gradable=yes&from=2026-02-30&to=tomorrow',
      ),
    );
    expect(filters).toEqual(DEFAULT_FILTERS);
  });

  it('a reversed date range keeps only the start', () => {
    const filters = filtersFromSearch(new URLSearchParams('from=2026-03-10&to=2026-03-01'));
    expect(filters.dateFrom).toBe('2026-03-10');
    expect(filters.dateTo).toBeUndefined();
  });

  it('changing a filter goes back to page 1 and removes cleared filters', () => {
    const start = filtersFromSearch(new URLSearchParams('page=4&class=glaucoma&q=abc'));
    const next = withFilter(start, { q: undefined, feedback: 'none' });
    expect(next.page).toBe(1);
    expect(next.q).toBeUndefined();
    expect(searchFromFilters(next).toString()).toBe('class=glaucoma&feedback=none');
    expect(withFilter(start, { page: 5 }).page).toBe(5);
  });

  it('the API query names the API parameters and sends tz with dates', () => {
    const filters = filtersFromSearch(new URLSearchParams('class=cataract&gradable=true&from=2026-01-01&patient=P1'));
    expect(toQuery(filters, 'America/Lima')).toEqual({
      page: 1,
      page_size: 20,
      sort: 'created_at',
      order: 'desc',
      predicted_class: 'cataract',
      gradable: true,
      patient_ref: 'P1',
      date_from: '2026-01-01',
      tz: 'America/Lima',
    });
    expect(toQuery(DEFAULT_FILTERS, 'UTC')).not.toHaveProperty('tz');
  });
});
