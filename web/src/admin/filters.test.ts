import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import {
  AUDIT_ACTIONS,
  auditExportQuery,
  auditFiltersFromSearch,
  auditListQuery,
  eventChanges,
  searchFromAuditFilters,
  searchFromUserFilters,
  showValue,
  userFiltersFromSearch,
  withAuditFilter,
} from './filters';
import type { AuditFilters } from './filters';
import { ADMIN_MESSAGES } from './messages';

const SCHEMA = fileURLToPath(new URL('../../../docs/openapi.json', import.meta.url));

function schemaActions(): string[] {
  const schema = JSON.parse(readFileSync(SCHEMA, 'utf-8')) as {
    components: { schemas: Record<string, { properties?: Record<string, { enum?: string[] }> }> };
  };
  return schema.components.schemas.AuditEvent?.properties?.action?.enum ?? [];
}

describe('audit actions', () => {
  it('the list is the schema’s, and each action has words in es and en', () => {
    expect([...AUDIT_ACTIONS].sort()).toEqual([...schemaActions()].sort());
    for (const action of AUDIT_ACTIONS) {
      expect(ADMIN_MESSAGES.es.action[action], action).toBeTruthy();
      expect(ADMIN_MESSAGES.en.action[action], action).toBeTruthy();
    }
  });
});

describe('users filters <-> URL', () => {
  it('round trip; defaults write nothing; bad pages fall back to 1', () => {
    expect(searchFromUserFilters({ page: 1 }).toString()).toBe('');
    const filters = { q: 'ana quispe', page: 3 };
    expect(userFiltersFromSearch(new URLSearchParams(searchFromUserFilters(filters).toString()))).toEqual(filters);
    expect(userFiltersFromSearch(new URLSearchParams('page=-1&q=%20%20'))).toEqual({ page: 1 });
    expect(userFiltersFromSearch(new URLSearchParams('page=1e3'))).toEqual({ page: 1 });
  });
});

describe('audit filters <-> URL <-> API', () => {
  const full: AuditFilters = {
    actorId: 42,
    action: 'user.disable',
    targetType: 'user',
    targetId: '7',
    dateFrom: '2026-03-01',
    dateTo: '2026-03-31',
    cursor: '1234',
  };

  it('every filter survives the round trip', () => {
    expect(auditFiltersFromSearch(new URLSearchParams(searchFromAuditFilters(full).toString()))).toEqual(full);
    expect(searchFromAuditFilters({}).toString()).toBe('');
  });

  it('malformed values are dropped, not sent', () => {
    const parsed = auditFiltersFromSearch(
      new URLSearchParams('actor=0&action=user.delete_all&target_type=User;DROP&from=2026-02-30&to=soon&cursor=abc'),
    );
    expect(parsed).toEqual({});
    expect(auditFiltersFromSearch(new URLSearchParams('from=2026-03-10&to=2026-03-01'))).toEqual({ dateFrom: '2026-03-10' });
  });

  it('changing a filter starts from the newest page again', () => {
    const next = withAuditFilter(full, { action: 'user.role' });
    expect(next.cursor).toBeUndefined();
    expect(next.action).toBe('user.role');
    expect(withAuditFilter(full, { actorId: undefined }).actorId).toBeUndefined();
  });

  it('the API queries: the same filters for list and export, tz with dates, cursor only in the list', () => {
    const exportQuery = auditExportQuery(full, 'America/Lima');
    expect(exportQuery).toEqual({
      actor_id: 42,
      action: 'user.disable',
      target_type: 'user',
      target_id: '7',
      date_from: '2026-03-01',
      date_to: '2026-03-31',
      tz: 'America/Lima',
    });
    expect(auditListQuery(full, 'America/Lima', 25)).toEqual({ ...exportQuery, cursor: '1234', limit: 25 });
    expect(auditExportQuery({ action: 'auth.login' }, 'UTC')).toEqual({ action: 'auth.login' });
  });
});

describe('an event’s old and new values', () => {
  it('every field of either side, with both values and whether it changed', () => {
    expect(eventChanges({ old: { role: 'doctor', is_active: true }, new: { role: 'admin', is_active: true, by: 3 } })).toEqual([
      { field: 'role', old: 'doctor', new: 'admin', changed: true },
      { field: 'is_active', old: true, new: true, changed: false },
      { field: 'by', old: undefined, new: 3, changed: true },
    ]);
    expect(eventChanges({ old: null, new: null })).toEqual([]);
    expect(showValue(undefined)).toBe('–');
    expect(showValue('x')).toBe('x');
    expect(showValue({ a: [1, null] })).toBe('{"a":[1,null]}');
  });
});
