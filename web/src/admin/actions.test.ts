import { describe, expect, it } from 'vitest';

import { modelActions, otherRole, replacedBy, shadowRateOf, undoOf, wasActive } from './actions';

const versions = [
  { version: 'aaaaaaaaaaaa', status: 'active' as const },
  { version: 'bbbbbbbbbbbb', status: 'staged' as const },
  { version: 'cccccccccccc', status: 'retired' as const },
];

describe('model actions', () => {
  it('staged versions can be activated, retired or shadowed; the active and retired ones nothing', () => {
    expect(modelActions({ status: 'staged' })).toEqual(['activate', 'retire', 'shadow']);
    expect(modelActions({ status: 'active' })).toEqual([]);
    expect(modelActions({ status: 'retired' })).toEqual([]);
  });

  it('the activation names the version it replaces, and its undo re-activates that one', () => {
    expect(replacedBy(versions, 'bbbbbbbbbbbb')).toBe('aaaaaaaaaaaa');
    expect(replacedBy(versions, 'aaaaaaaaaaaa')).toBeUndefined();
    expect(replacedBy([], 'bbbbbbbbbbbb')).toBeUndefined();
    expect(undoOf('activate', { replaced: 'aaaaaaaaaaaa' })).toEqual({ kind: 'activate', target: 'aaaaaaaaaaaa' });
    expect(undoOf('activate', {})).toBeUndefined();
    expect(wasActive({ activated_at: '2026-01-01T00:00:00Z' })).toBe(true);
    expect(wasActive({ activated_at: null })).toBe(false);
  });

  it('retire has no undo; disable is undone by enable, a role change by the old role', () => {
    expect(undoOf('retire', { replaced: 'x' })).toBeUndefined();
    expect(undoOf('disable', { userId: 7 })).toEqual({ kind: 'enable', target: 7 });
    expect(undoOf('enable', { userId: 7 })).toBeUndefined();
    expect(undoOf('role', { userId: 7, role: 'doctor' })).toEqual({ kind: 'role', target: 7, role: 'doctor' });
    expect(otherRole('doctor')).toBe('admin');
    expect(otherRole('admin')).toBe('doctor');
  });

  it('a shadow rate typed as a percentage becomes the API’s share, or nothing', () => {
    expect(shadowRateOf('25')).toBe(0.25);
    expect(shadowRateOf(' 12,5 % ')).toBe(0.125);
    expect(shadowRateOf('0')).toBe(0);
    expect(shadowRateOf('100')).toBe(1);
    expect(shadowRateOf('0.01')).toBe(0.0001);
    for (const bad of ['', '101', '-1', 'abc', '1e2', '50.123', '5 0']) expect(shadowRateOf(bad), bad).toBeUndefined();
  });
});
