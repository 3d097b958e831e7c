/**
 * `make run`'s shape (one `ocupredict serve` process, no nginx): the app itself serves the
 * built web app at /, its routes fall back to index.html, and a doctor registers, verifies
 * and signs in there.
 */
import { expect, test } from '@playwright/test';

import { PASSWORD, codeFor, uniqueEmail } from './support';

test('the web app at / of `ocupredict serve`: register, verify, sign out, sign in', async ({ page, request }) => {
  const index = await request.get('/history/5');
  expect(index.status()).toBe(200);
  expect(index.headers()['content-type']).toContain('text/html');
  const api = await request.get('/api/v1/nowhere');
  expect(api.status()).toBe(404);
  expect((await api.json()).code).toBe('NOT_FOUND');

  const email = uniqueEmail('serve');
  await page.goto('/register');
  await page.getByLabel('Nombre').fill('Dra. Rosa Huamán');
  await page.getByLabel('Correo electrónico').fill(email);
  await page.getByLabel(/^Contraseña/).fill(PASSWORD);
  await page.getByLabel('Repita la contraseña').fill(PASSWORD);
  await page.getByRole('button', { name: 'Crear cuenta' }).click();
  await page.getByLabel('Código de 6 dígitos').fill(await codeFor(email));
  await page.getByRole('button', { name: 'Verificar y entrar' }).click();
  await expect(page.getByRole('heading', { name: 'Nueva evaluación' })).toBeVisible();
  await page.getByRole('button', { name: 'Cerrar sesión' }).click();
  await expect(page.getByRole('heading', { name: 'Iniciar sesión' })).toBeVisible();
  await page.getByLabel('Correo electrónico').fill(email);
  await page.getByLabel('Contraseña').fill(PASSWORD);
  await page.getByRole('button', { name: 'Entrar' }).click();
  await expect(page.getByRole('heading', { name: 'Nueva evaluación' })).toBeVisible();
  await page.reload();
  await expect(page.getByRole('heading', { name: 'Nueva evaluación' })).toBeVisible();
});
