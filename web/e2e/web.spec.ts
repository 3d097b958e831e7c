/**
 * The doctors' web app end to end, through nginx in front of two processes (make e2e):
 * register -> code from the mail sink -> verify -> upload scikit-image's retina
 * photograph -> result with recommendation and heatmap -> correct it -> the history
 * filtered finds it with its thumbnail -> the dashboard counts it -> reload: still signed
 * in -> sign out; DICOM and ungradable uploads; another doctor gets "not found"; Spanish by
 * default, English after the switch; the refresh token out of every script's reach; axe
 * and screenshots of every screen in both languages.
 */
import { join } from 'node:path';

import { expect, test } from '@playwright/test';
import type { APIRequestContext, BrowserContext, Page, Response } from '@playwright/test';

import { API, FIXTURES, PASSWORD, checkA11y, codeFor, screen, uniqueEmail } from './support';

const RETINA = join(FIXTURES, 'retina.jpg');
const DICOM = join(FIXTURES, 'retina-left.dcm');
const UNGRADABLE = join(FIXTURES, 'letter.jpg');
const COOKIE = 'ocupredict_refresh';

async function chooseLanguage(page: Page, label: 'English' | 'Español'): Promise<void> {
  await page.getByTestId('language').click();
  await page.getByRole('option', { name: label }).click();
}

async function registerAndVerify(page: Page, email: string, name: string): Promise<void> {
  await page.goto('/register');
  await page.getByLabel('Nombre').fill(name);
  await page.getByLabel('Correo electrónico').fill(email);
  await page.getByLabel(/^Contraseña/).fill(PASSWORD);
  await page.getByLabel('Repita la contraseña').fill(PASSWORD);
  await page.getByRole('button', { name: 'Crear cuenta' }).click();
  await expect(page.getByRole('heading', { name: 'Verificar correo' })).toBeVisible();
  // The resend button waits for the server's cooldown.
  await expect(page.getByRole('button', { name: /Reenviar en \d+ s/ })).toBeDisabled();
  await page.getByLabel('Código de 6 dígitos').fill(await codeFor(email));
  await page.getByRole('button', { name: 'Verificar y entrar' }).click();
  await expect(page.getByRole('heading', { name: 'Nueva evaluación' })).toBeVisible();
}

async function upload(page: Page, file: string, patient: string): Promise<void> {
  await page.goto('/evaluate');
  await page.getByTestId('file-input').setInputFiles(file);
  await page.getByLabel('Referencia del paciente (opcional)').fill(patient);
  await page.getByRole('button', { name: 'Evaluar', exact: true }).click();
  await expect(page.getByTestId('result')).toBeVisible({ timeout: 60_000 });
}

async function imageLoaded(page: Page, testId: string): Promise<{ width: number; height: number }> {
  const image = page.getByTestId(testId).first();
  await expect(image).toBeVisible();
  await expect.poll(() => image.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth)).toBeGreaterThan(0);
  return image.evaluate((img: HTMLImageElement) => ({ width: img.naturalWidth, height: img.naturalHeight }));
}

async function refreshCookie(context: BrowserContext): Promise<string | undefined> {
  return (await context.cookies()).find((c) => c.name === COOKIE)?.value;
}

async function refreshWith(request: APIRequestContext, token: string): Promise<number> {
  const response = await request.post(`${API}/auth/refresh`, {
    headers: { Cookie: `${COOKIE}=${token}`, 'X-OcuPredict-Client': 'web' },
  });
  return response.status();
}

test('public screens: Spanish by default, English after the switch; axe and screenshots', async ({ page }) => {
  await page.goto('/');
  await expect(page).toHaveURL(/\/signin$/);
  await expect(page.getByRole('heading', { name: 'Iniciar sesión' })).toBeVisible();
  await expect(page.locator('html')).toHaveAttribute('lang', 'es');
  const screens: [string, string, string][] = [
    ['/signin', 'Iniciar sesión', 'Sign in'],
    ['/register', 'Crear cuenta', 'Create an account'],
    ['/verify', 'Verificar correo', 'Verify your email'],
    ['/forgot', 'Recuperar contraseña', 'Reset your password'],
    ['/reset', 'Nueva contraseña', 'New password'],
  ];
  for (const [path, es] of screens) {
    await page.goto(path);
    await expect(page.getByRole('heading', { name: es })).toBeVisible();
    await screen(page, `${path.slice(1)}-es`);
  }
  // The password rules are shown before submitting.
  await page.goto('/register');
  await expect(page.getByText('Entre 10 y 128 caracteres')).toBeVisible();
  await chooseLanguage(page, 'English');
  await expect(page.locator('html')).toHaveAttribute('lang', 'en');
  for (const [path, , en] of screens) {
    await page.goto(path);
    await expect(page.getByRole('heading', { name: en })).toBeVisible();
    await screen(page, `${path.slice(1)}-en`);
  }
  // A wrong password: the message of its code, in the app's language.
  await page.goto('/signin');
  await page.getByLabel('Email').fill('nobody@example.com');
  await page.getByLabel('Password').fill('not-the-password-1');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toHaveText('Incorrect email or password.');
  await chooseLanguage(page, 'Español');
});

test.describe.serial('a doctor', () => {
  const baseURL = process.env.OCUPREDICT_URL ?? 'http://127.0.0.1:8000';
  let context: BrowserContext;
  let page: Page;
  let predictionId = 0;
  let predictedLabel = '';
  let correctedLabel = '';
  const cookiesSeen = new Set<string>();
  const bodies: string[] = [];
  const email = uniqueEmail('doctor');

  const noteCookie = async () => {
    const value = await refreshCookie(context);
    if (value) cookiesSeen.add(value);
    return value;
  };

  test.beforeAll(async ({ browser }) => {
    context = await browser.newContext({ baseURL, locale: 'es-PE', timezoneId: 'America/Lima' });
    page = await context.newPage();
    page.on('response', (response: Response) => {
      if (!response.url().includes('/api/')) return;
      response
        .text()
        .then((text) => bodies.push(text))
        .catch(() => undefined);
    });
  });

  test.afterAll(async () => {
    await context.close();
  });

  test('registers, reads the code from the mail, verifies and is signed in', async () => {
    await registerAndVerify(page, email, 'Dra. Ana Quispe');
    const cookie = (await context.cookies()).find((c) => c.name === COOKIE);
    expect(cookie, 'the refresh cookie').toBeDefined();
    expect(cookie?.httpOnly).toBe(true);
    expect(cookie?.secure).toBe(true);
    expect(cookie?.sameSite).toBe('Strict');
    expect(cookie?.path).toBe(`${API}/auth`);
    await noteCookie();
    await screen(page, 'evaluate-es');
  });

  test('evaluates the retina photograph: recommendation, heatmap, correction', async () => {
    await page.getByTestId('file-input').setInputFiles(RETINA);
    await expect(page.getByAltText('Vista previa de la imagen elegida')).toBeVisible();
    await page.getByLabel('Referencia del paciente (opcional)').fill('HC-0001');
    await page.getByRole('radio', { name: 'Derecho' }).check();
    await page.getByRole('button', { name: 'Evaluar', exact: true }).click();
    const result = page.getByTestId('result');
    await expect(result).toBeVisible({ timeout: 60_000 });
    await expect(page.getByTestId('demo-banner')).toBeVisible();
    const badge = result.locator('[data-recommendation]').first();
    await expect(badge).toHaveText(/Derivar|Control de rutina|No concluyente|Repetir imagen/);
    // Four probability bars with the server's labels.
    await expect(result.getByRole('progressbar')).toHaveCount(4);
    await expect(result.getByRole('progressbar', { name: 'Probabilidad de Retinopatía diabética' })).toBeVisible();
    await imageLoaded(page, 'photo');
    const heading = await result.getByRole('heading', { level: 2 }).textContent();
    predictedLabel = (heading ?? '').replace(/^Resultado: /, '').trim();
    expect(predictedLabel).not.toBe('');

    await page.getByLabel('Mostrar mapa de calor (Grad-CAM)').check();
    const heatmap = await imageLoaded(page, 'heatmap');
    expect(Math.max(heatmap.width, heatmap.height)).toBeLessThanOrEqual(512);
    await page.getByLabel('Clase del mapa de calor').click();
    await page.getByRole('option').filter({ hasNotText: predictedLabel }).first().click();
    await imageLoaded(page, 'heatmap');
    await screen(page, 'result-es');

    await page.getByRole('button', { name: 'Corregir' }).click();
    await page.getByLabel('Clase correcta').click();
    const option = page.getByRole('option').first();
    correctedLabel = ((await option.textContent()) ?? '').trim();
    await option.click();
    await page.getByLabel('Comentario (opcional)').fill('Excavación papilar aumentada');
    await page.getByRole('button', { name: 'Guardar corrección' }).click();
    await expect(page.getByTestId('feedback-state')).toContainText(`Corregido: ${correctedLabel}`);
    await noteCookie();
  });

  test('the history filtered by the correction finds it, with its thumbnail', async () => {
    await page.getByRole('link', { name: 'Historial' }).click();
    await expect(page.getByRole('heading', { name: 'Historial' })).toBeVisible();
    await page.getByTestId('filter-feedback').click();
    await page.getByRole('option', { name: 'Incorrecta' }).click();
    await expect(page).toHaveURL(/feedback=incorrect/);
    await page.getByTestId('filter-class').click();
    await page.getByRole('option', { name: predictedLabel, exact: true }).click();
    await expect(page).toHaveURL(/class=/);
    const rows = page.getByTestId('history-row');
    await expect(rows).toHaveCount(1);
    await expect(rows.first()).toContainText(`→ ${correctedLabel}`);
    await expect(rows.first()).toContainText('HC-0001');
    predictionId = Number(await rows.first().getAttribute('data-id'));
    expect(predictionId).toBeGreaterThan(0);
    const thumb = rows.first().getByRole('img');
    await expect.poll(() => thumb.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth)).toBeGreaterThan(0);
    const size = await thumb.evaluate((img: HTMLImageElement) => Math.max(img.naturalWidth, img.naturalHeight));
    expect(size).toBeLessThanOrEqual(256);
    await screen(page, 'history-es');

    // The filters are the URL: the back button and a reload keep them.
    const filtered = page.url();
    await page.goto('/history');
    await expect(page.getByTestId('history-row')).toHaveCount(1);
    await page.goBack();
    await expect(page).toHaveURL(filtered);
    await page.getByTestId('filter-feedback').click();
    await page.getByRole('option', { name: 'Correcta', exact: true }).click();
    await expect(page.getByText('No hay evaluaciones con estos filtros.')).toBeVisible();

    await page.goto(`/history/${predictionId}`);
    await expect(page.getByRole('heading', { name: `Evaluación ${predictionId}` })).toBeVisible();
    await imageLoaded(page, 'photo');
    await expect(page.getByTestId('feedback-state')).toContainText(correctedLabel);
    await screen(page, 'detail-es');
  });

  test('the dashboard counts it', async () => {
    await page.getByRole('link', { name: 'Panel' }).click();
    await expect(page.getByRole('heading', { name: 'Panel' })).toBeVisible();
    await expect(page.getByTestId('stat-mine')).toHaveText('1');
    await expect(page.getByTestId('stat-correct')).toHaveText(/0/);
    await expect(page.getByTestId('confusion')).toBeVisible();
    await page.getByRole('button', { name: '30 días' }).click();
    await expect(page).toHaveURL(/range=month/);
    await expect(page.getByTestId('stat-mine')).toHaveText('1');
    await screen(page, 'dashboard-es');
  });

  test('a DICOM upload shows its PNG rendering and its laterality', async () => {
    await upload(page, DICOM, 'HC-0002');
    await imageLoaded(page, 'photo');
    await expect(page.getByTestId('result')).toContainText('Ojo: Izquierdo');
  });

  test('an ungradable upload says "retake image" with its reasons', async () => {
    await upload(page, UNGRADABLE, 'HC-0003');
    await expect(page.getByTestId('result').locator('[data-recommendation="retake_image"]')).toHaveText(/Repetir imagen/);
    await expect(page.getByTestId('quality-reasons')).toContainText('No se ve un fondo de ojo');
  });

  test('the profile shows the account and its security activity', async () => {
    await page.getByRole('link', { name: 'Perfil' }).click();
    await expect(page.getByRole('heading', { name: 'Perfil', level: 1 })).toBeVisible();
    await expect(page.getByTestId('activity')).toContainText('Verificación de correo');
    await screen(page, 'profile-es');
  });

  test('a reload keeps the session; the refresh token is out of every script’s reach', async () => {
    await page.goto('/history');
    await page.reload();
    await expect(page.getByRole('heading', { name: 'Historial' })).toBeVisible();
    await expect(page.getByTestId('history-row')).toHaveCount(3);
    const current = await noteCookie();
    expect(current).toBeTruthy();
    const reachable = await page.evaluate(async () => {
      const dump = (storage: Storage) => Object.keys(storage).map((k) => `${k}=${storage.getItem(k)}`).join('\n');
      const databases = 'databases' in indexedDB ? await indexedDB.databases() : [];
      return {
        local: dump(localStorage),
        session: dump(sessionStorage),
        cookie: document.cookie,
        indexedDb: JSON.stringify(databases),
      };
    });
    expect(reachable.indexedDb).toBe('[]');
    for (const token of cookiesSeen) {
      expect(token.length).toBeGreaterThan(20);
      for (const [where, text] of Object.entries(reachable)) {
        expect(text.includes(token), `refresh token in ${where}`).toBe(false);
      }
      expect(bodies.some((body) => body.includes(token)), 'refresh token in a response body').toBe(false);
    }
    expect(bodies.length).toBeGreaterThan(10);
    expect(bodies.some((body) => body.includes('"refresh_token":null'))).toBe(true);
  });

  test('a page of another origin cannot use the cookie to refresh', async ({ request }) => {
    const before = await refreshCookie(context);
    const evil = await context.newPage();
    await evil.route('http://evil.test/**', (route) =>
      route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>evil</title><p>hi</p>' }),
    );
    await evil.goto('http://evil.test/');
    const target = new URL(`${API}/auth/refresh`, page.url()).toString();
    const outcome = await evil.evaluate(async (url) => {
      const results: string[] = [];
      try {
        // The app's header forces a CORS preflight the service never grants.
        const r = await fetch(url, { method: 'POST', credentials: 'include', headers: { 'X-OcuPredict-Client': 'web' } });
        results.push(`cors:${r.status}:${await r.text()}`);
      } catch {
        results.push('cors:blocked');
      }
      try {
        // A "simple" request without the header: no preflight, opaque to the page.
        const r = await fetch(url, { method: 'POST', credentials: 'include', mode: 'no-cors' });
        results.push(`no-cors:${r.type}`);
      } catch {
        results.push('no-cors:blocked');
      }
      return results;
    }, target);
    // (Chromium may also refuse the second outright: a public origin calling a loopback one.)
    expect(outcome[0]).toBe('cors:blocked');
    expect(outcome[1]).toMatch(/^no-cors:(opaque|blocked)$/);
    await evil.close();
    // Nothing was spent or rotated: the same cookie still works for the app itself.
    expect(await refreshCookie(context)).toBe(before);
    // And the server refuses the cookie without the app's header (what that form post sent).
    const forged = await request.post(`${API}/auth/refresh`, { headers: { Cookie: `${COOKIE}=${before}` } });
    expect(forged.status()).toBe(403);
    expect((await forged.json()).code).toBe('CSRF_REJECTED');
    await page.reload();
    await expect(page.getByRole('heading', { name: 'Historial' })).toBeVisible();
    await noteCookie();
  });

  test('in English after the switch, every signed-in screen passes axe', async () => {
    await page.goto('/evaluate');
    await chooseLanguage(page, 'English');
    await expect(page.getByRole('heading', { name: 'New evaluation' })).toBeVisible();
    await expect(page.getByRole('link', { name: 'History' })).toBeVisible();
    await screen(page, 'evaluate-en');
    await page.goto(`/history/${predictionId}`);
    await expect(page.getByRole('heading', { name: `Evaluation ${predictionId}` })).toBeVisible();
    // Labels from the API follow the saved locale.
    await expect(page.getByTestId('result').getByRole('progressbar', { name: 'Probability of Diabetic retinopathy' })).toBeVisible();
    await screen(page, 'detail-en');
    await page.getByLabel('Show heatmap (Grad-CAM)').check();
    await imageLoaded(page, 'heatmap');
    await screen(page, 'result-en');
    await page.goto('/history');
    await expect(page.getByTestId('history-row')).toHaveCount(3);
    await screen(page, 'history-en');
    await page.goto('/dashboard');
    await expect(page.getByTestId('stat-mine')).toHaveText('3');
    await screen(page, 'dashboard-en');
    await page.goto('/profile');
    await expect(page.getByRole('heading', { name: 'Profile', level: 1 })).toBeVisible();
    await screen(page, 'profile-en');
    await page.goto('/no-such-screen');
    await expect(page.getByTestId('not-found')).toBeVisible();
    await checkA11y(page, 'not-found');
    // Still English after a reload: the account's locale.
    await page.reload();
    await expect(page.getByTestId('not-found')).toContainText('Not found');
    await chooseLanguage(page, 'Español');
    await expect(page.getByTestId('not-found')).toContainText('No encontrado');
  });

  test('another doctor opening this record by its URL sees "not found"', async ({ browser }) => {
    const other = await browser.newContext({ baseURL, locale: 'es-PE' });
    const otherPage = await other.newPage();
    await registerAndVerify(otherPage, uniqueEmail('other'), 'Dr. Luis Mamani');
    await otherPage.goto(`/history/${predictionId}`);
    await expect(otherPage.getByTestId('not-found')).toContainText('No encontrado');
    await checkA11y(otherPage, 'not-found (another doctor)');
    await other.close();
  });

  test('signing out removes the cookie and the old refresh token is refused', async ({ request }) => {
    await page.goto('/evaluate');
    const last = await noteCookie();
    expect(last).toBeTruthy();
    await page.getByRole('button', { name: 'Cerrar sesión' }).click();
    await expect(page.getByRole('heading', { name: 'Iniciar sesión' })).toBeVisible();
    expect(await refreshCookie(context)).toBeUndefined();
    for (const token of cookiesSeen) {
      expect(await refreshWith(request, token)).toBe(401);
    }
    await page.reload();
    await expect(page.getByRole('heading', { name: 'Iniciar sesión' })).toBeVisible();
    // And it signs in again with the password.
    await page.getByLabel('Correo electrónico').fill(email);
    await page.getByLabel('Contraseña').fill(PASSWORD);
    await page.getByRole('button', { name: 'Entrar' }).click();
    await expect(page.getByRole('heading', { name: 'Nueva evaluación' })).toBeVisible();
  });
});
