/**
 * What each destructive action of the console asks before it runs and how it is undone
 * (where the API allows it): pure functions, unit-tested, that the dialogs render.
 */
import type { AdminUser, ModelVersion } from '@ocupredict/client';

export type ModelAction = 'activate' | 'retire' | 'shadow';

/** Which actions a version offers: activate (or roll back to) any version not active and
 * not retired; retire and shadow only a staged one. */
export function modelActions(version: Pick<ModelVersion, 'status'>): ModelAction[] {
  if (version.status === 'staged') return ['activate', 'retire', 'shadow'];
  return [];
}

/** The version an activation of `target` replaces (the active one now), if any other. */
export function replacedBy(versions: Pick<ModelVersion, 'version' | 'status'>[], target: string): string | undefined {
  const active = versions.find((v) => v.status === 'active');
  return active && active.version !== target ? active.version : undefined;
}

/** Whether `version` has been active before (a rollback target rather than a first
 * activation). */
export function wasActive(version: Pick<ModelVersion, 'activated_at'>): boolean {
  return Boolean(version.activated_at);
}

export interface Undo {
  kind: 'activate' | 'enable' | 'role';
  /** The model version or user id to act on. */
  target: string | number;
  /** For a role undo: the role to give back. */
  role?: AdminUser['role'];
}

/** How each done action is undone: an activation by re-activating what it replaced; a
 * disable by enabling; a role change by the old role. Retire has no undo in the API. */
export function undoOf(
  action: 'activate' | 'disable' | 'enable' | 'role' | 'retire',
  before: { replaced?: string; userId?: number; role?: AdminUser['role'] },
): Undo | undefined {
  switch (action) {
    case 'activate':
      return before.replaced ? { kind: 'activate', target: before.replaced } : undefined;
    case 'disable':
      return before.userId !== undefined ? { kind: 'enable', target: before.userId } : undefined;
    case 'enable': // undoing it would disable again: a destructive action, asked for anew
    case 'role':
      return before.userId !== undefined && before.role ? { kind: 'role', target: before.userId, role: before.role } : undefined;
    case 'retire':
      return undefined;
  }
}

/** A shadow rate typed as a percentage (0-100, a comma or point for decimals) as the
 * API's share 0..1; undefined when it is not a number in range. */
export function shadowRateOf(percent: string): number | undefined {
  const cleaned = percent.trim().replace(',', '.').replace(/%$/, '').trim();
  if (!/^\d{1,3}(\.\d{1,2})?$/.test(cleaned)) return undefined;
  const value = Number(cleaned);
  return value >= 0 && value <= 100 ? Math.round(value * 100) / 10_000 : undefined;
}

/** The other role. */
export function otherRole(role: AdminUser['role']): AdminUser['role'] {
  return role === 'admin' ? 'doctor' : 'admin';
}
