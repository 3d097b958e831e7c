import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { ApiError, ERROR_MESSAGES, errorMessage, unwrap } from './errors';

const SCHEMA = fileURLToPath(new URL('../../../docs/openapi.json', import.meta.url));

interface Schema {
  components: { schemas: Record<string, { properties?: { code?: { enum?: string[] } } }> };
}

function schemaCodes(): string[] {
  const schema = JSON.parse(readFileSync(SCHEMA, 'utf-8')) as Schema;
  const codes = new Set<string>();
  for (const [name, component] of Object.entries(schema.components.schemas)) {
    if (name.startsWith('Error')) {
      for (const code of component.properties?.code?.enum ?? []) codes.add(code);
    }
  }
  return [...codes].sort();
}

describe('error messages', () => {
  it('the schema declares error codes', () => {
    expect(schemaCodes().length).toBeGreaterThan(20);
    expect(schemaCodes()).toContain('CSRF_REJECTED');
  });

  it.each(schemaCodes())('%s has a message in es and in en', (code) => {
    const message = ERROR_MESSAGES[code];
    expect(message, `no message for ${code}`).toBeDefined();
    expect(message?.es.trim()).not.toBe('');
    expect(message?.en.trim()).not.toBe('');
    expect(message?.es).not.toBe(message?.en);
  });

  it('the code picks the message; an unknown code gets the general one', () => {
    expect(errorMessage(new ApiError(401, 'INVALID_CREDENTIALS', 'x'), 'es')).toBe('Correo o contraseña incorrectos.');
    expect(errorMessage(new ApiError(401, 'INVALID_CREDENTIALS', 'x'), 'en')).toBe('Incorrect email or password.');
    expect(errorMessage(new ApiError(418, 'TEAPOT', 'x'), 'en')).toBe('Something went wrong. Please try again.');
    expect(errorMessage(new TypeError('offline'), 'es')).toMatch(/conexión/);
  });

  it('unwrap turns an error body into an ApiError with its code and Retry-After', async () => {
    const response = new Response('{}', { status: 429, headers: { 'Retry-After': '42' } });
    await expect(
      unwrap(Promise.resolve({ error: { code: 'RATE_LIMITED', detail: 'slow down' }, response })),
    ).rejects.toMatchObject({ status: 429, code: 'RATE_LIMITED', retryAfter: 42 });
    await expect(unwrap(Promise.reject(new TypeError('failed')))).rejects.toMatchObject({ code: 'NETWORK_ERROR' });
    const ok = new Response('{}', { status: 200 });
    await expect(unwrap(Promise.resolve({ data: { id: 1 }, response: ok }))).resolves.toEqual({ id: 1 });
  });
});
