/**
 * The admin console end to end, through nginx in front of two processes (make e2e, step
 * "admin"): a doctor typing admin URLs sees "not allowed" and issues no admin request; the
 * admin disables a doctor (whose next request is refused and whose session ends), enables
 * them again, makes them admin and back (the LAST_ADMIN refusal explained); uploads weights
 * with a manifest (a refused file shows the validation's reason), activates them, sees
 * health-ready name them, rolls back; sets a shadow rate; opens a version's evidence after
 * predictions with feedback, whose numbers equal GET /admin/models/{version}/metrics, and
 * two versions side by side; filters the audit trail, pages it by cursor, reads an event's
 * old and new values and downloads the CSV, whose rows equal the API's export for the same
 * filters. axe and screenshots of every admin screen, in Spanish and English.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { expect, test } from '@playwright/test';
import type { APIRequestContext, BrowserContext, Page } from '@playwright/test';

import { API, FIXTURES, PASSWORD, checkA11y, codeFor, screen, uniqueEmail } from './support';

const ADMIN_EMAIL = process.env.OCUPREDICT_ADMIN_EMAIL ?? '';
const ADMIN_PASSWORD = process.env.OCUPREDICT_ADMIN_PASSWORD ?? '';
const WEIGHTS = join(FIXTURES, 'candidate.pth');
const MANIFEST = join(FIXTURES, 'candidate.json');
const NOT_A_MODEL = join(FIXTURES, 'not-a-model.pth');
const RETINA = join(FIXTURES, 'retina.jpg');
const baseURL = process.env.OCUPREDICT_URL ?? 'http://127.0.0.1:8000';

interface ModelVersionJson {
  version: string;
  status: string;
  demo: boolean;
  shadow_rate: number;
}

async function bearer(request: APIRequestContext, email: string, password: string): Promise<Record<string, string>> {
  const response = await request.post(`${API}/auth/login`, { form: { username: email, password } });
  expect(response.status(), `login of ${email}`).toBe(200);
  const { access_token } = (await response.json()) as { access_token: string };
  return { Authorization: `Bearer ${access_token}` };
}

async function getJson<T>(request: APIRequestContext, path: string, headers: Record<string, string>): Promise<T> {
  const response = await request.get(`${API}${path}`, { headers });
  expect(response.status(), path).toBe(200);
  return (await response.json()) as T;
}

async function signIn(page: Page, email: string, password: string): Promise<void> {
  await page.goto('/signin');
  await page.getByLabel('Correo electrónico').fill(email);
  await page.getByLabel('Contraseña').fill(password);
  await page.getByRole('button', { name: 'Entrar' }).click();
}

/** Switch the language of a signed-in user: saved as the account's locale (the PATCH
 * has answered before the next page load reads it). */
async function chooseLanguage(page: Page, label: 'English' | 'Español'): Promise<void> {
  const saved = page.waitForResponse((r) => r.url().endsWith(`${API}/auth/me`) && r.request().method() === 'PATCH');
  await page.getByTestId('language').click();
  await page.getByRole('option', { name: label }).click();
  expect((await saved).status()).toBe(200);
}

/** Once every transition (a dialog's fade-in) has finished: axe reads the final colours. */
async function settled(page: Page): Promise<void> {
  await page.waitForFunction(() => document.getAnimations().every((animation) => animation.playState !== 'running'));
}

/** axe and screenshots of the screen once its transitions are over. */
async function shot(page: Page, name: string): Promise<void> {
  await settled(page);
  await screen(page, name);
}

function userRow(page: Page, email: string) {
  return page.locator(`[data-testid="user-row"][data-email="${email}"]`);
}

function modelRow(page: Page, version: string) {
  return page.locator(`[data-testid="model-row"][data-version="${version}"]`);
}

test.describe.serial('the admin console', () => {
  // Each step does many requests and screenshots on a machine shared with the stack.
  test.describe.configure({ timeout: 300_000 });
  let admin: BrowserContext;
  let page: Page;
  let doctorContext: BrowserContext;
  let doctorPage: Page;
  let api: APIRequestContext;
  let adminHeaders: Record<string, string>;
  let adminId = 0;
  const doctorEmail = uniqueEmail('doctor-admin-e2e');
  const doctorName = 'Dr. Luis Huamán';
  let doctorId = 0;
  let demoVersion = '';
  let candidate = '';
  let trainedVersion = '';
  /** Admin API calls the doctor's browser made, with their statuses. */
  const doctorAdminCalls: { url: string; status: number }[] = [];

  test.beforeAll(async ({ browser, playwright }) => {
    expect(ADMIN_EMAIL, 'OCUPREDICT_ADMIN_EMAIL').not.toBe('');
    api = await playwright.request.newContext({ baseURL });
    adminHeaders = await bearer(api, ADMIN_EMAIL, ADMIN_PASSWORD);
    adminId = (await getJson<{ id: number }>(api, '/auth/me', adminHeaders)).id;
    // A doctor, registered and verified through the API (the web suite covers the screens).
    const registered = await api.post(`${API}/auth/register`, { data: { email: doctorEmail, password: PASSWORD, name: doctorName } });
    expect(registered.status()).toBe(201);
    doctorId = ((await registered.json()) as { id: number }).id;
    const verified = await api.post(`${API}/auth/verify`, { data: { email: doctorEmail, code: await codeFor(doctorEmail) } });
    expect(verified.status()).toBe(200);

    admin = await browser.newContext({ baseURL, locale: 'es-PE', timezoneId: 'America/Lima', acceptDownloads: true });
    page = await admin.newPage();
    doctorContext = await browser.newContext({ baseURL, locale: 'es-PE', timezoneId: 'America/Lima' });
    doctorPage = await doctorContext.newPage();
    doctorPage.on('response', (response) => {
      if (response.url().includes(`${API}/admin`)) doctorAdminCalls.push({ url: response.url(), status: response.status() });
    });
  });

  test.afterAll(async () => {
    await admin?.close();
    await doctorContext?.close();
    await api?.dispose();
  });

  test('a doctor who types an admin URL sees "not allowed" and requests no admin data', async () => {
    await signIn(doctorPage, doctorEmail, PASSWORD);
    await expect(doctorPage.getByRole('heading', { name: 'Nueva evaluación' })).toBeVisible();
    await expect(doctorPage.getByTestId('nav-admin')).toHaveCount(0);
    for (const path of ['/admin/users', '/admin/models', '/admin/models/0123456789ab', '/admin/models/0123456789ab/evaluation', '/admin/datasets', '/admin/training', '/admin/audit?action=user.role', '/admin/nothing']) {
      await doctorPage.goto(path);
      await expect(doctorPage.getByTestId('not-allowed')).toBeVisible();
      await expect(doctorPage.getByRole('heading', { name: 'No permitido' })).toBeVisible();
    }
    await shot(doctorPage, 'admin-not-allowed-es');
    // The network log: no admin request at all, so none answered with data.
    expect(doctorAdminCalls).toEqual([]);
    // The API itself refuses the doctor (403), whatever the app shows.
    const doctorHeaders = await bearer(api, doctorEmail, PASSWORD);
    expect((await api.get(`${API}/admin/users`, { headers: doctorHeaders })).status()).toBe(403);
  });

  test('the admin signs in and sees the admin entries; users are searched and paged', async () => {
    await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
    await expect(page.getByTestId('nav-admin')).toBeVisible();
    await page.getByRole('link', { name: 'Usuarios' }).click();
    await expect(page.getByRole('heading', { name: 'Usuarios' })).toBeVisible();
    await expect(page.getByTestId('user-row').first()).toBeVisible();
    await page.getByTestId('user-search').fill(doctorEmail);
    await expect(page).toHaveURL(/q=/);
    await expect(page.getByTestId('user-row')).toHaveCount(1);
    await expect(userRow(page, doctorEmail)).toContainText(doctorName);
    // The doctor signed in above: the last login is shown, not "Nunca".
    await expect(userRow(page, doctorEmail).getByTestId('last-login')).not.toHaveText('Nunca');
    await page.getByTestId('user-search').fill('');
    await expect(page).not.toHaveURL(/q=/);
    await shot(page, 'admin-users-es');
  });

  test('disabling a doctor ends their session at their next request; enabling lets them back', async () => {
    await page.getByTestId('user-search').fill(doctorEmail);
    const row = userRow(page, doctorEmail);
    await expect(page.getByTestId('user-row')).toHaveCount(1);
    await row.getByRole('button', { name: 'Desactivar' }).click();
    const dialog = page.getByTestId('confirm-dialog');
    await expect(dialog).toContainText(doctorEmail);
    await shot(page, 'admin-users-confirm-es');
    await dialog.getByTestId('confirm').click();
    await expect(row).toHaveAttribute('data-active', 'false');
    await expect(page.getByTestId('notice')).toContainText(doctorEmail);

    // The doctor's next request (in the open app, with the access token it holds) is
    // refused and the session ends: back to the sign-in page.
    await doctorPage.getByRole('link', { name: 'Historial' }).click();
    await expect(doctorPage).toHaveURL(/\/signin/, { timeout: 30_000 });
    await signIn(doctorPage, doctorEmail, PASSWORD);
    await expect(doctorPage.getByRole('alert')).toHaveText('Un administrador ha desactivado esta cuenta.');

    // Undo: enabled again; the doctor signs in.
    await page.getByTestId('undo').click();
    await expect(row).toHaveAttribute('data-active', 'true');
    await signIn(doctorPage, doctorEmail, PASSWORD);
    // Signed in again: the app opens and the history answers.
    await expect(doctorPage).not.toHaveURL(/\/signin/, { timeout: 30_000 });
    await doctorPage.getByRole('link', { name: 'Historial' }).click();
    await expect(doctorPage.getByRole('heading', { name: 'Historial' })).toBeVisible();
    const user = await getJson<{ is_active: boolean }>(api, `/admin/users/${doctorId}`, adminHeaders);
    expect(user.is_active).toBe(true);
  });

  test('the last administrator cannot give up the role: the refusal is explained', async () => {
    await page.getByTestId('user-search').fill(ADMIN_EMAIL);
    const row = userRow(page, ADMIN_EMAIL);
    await expect(page.getByTestId('user-row')).toHaveCount(1);
    await row.getByRole('button', { name: 'Quitar administrador' }).click();
    const dialog = page.getByTestId('confirm-dialog');
    await dialog.getByTestId('confirm').click();
    await expect(dialog.getByTestId('last-admin')).toContainText('al menos un administrador activo');
    await settled(page);
    await checkA11y(page, 'last admin refusal');
    await dialog.getByRole('button', { name: 'Cancelar' }).click();
    await expect(row).toHaveAttribute('data-role', 'admin');
  });

  test('makes the doctor an admin and back; a demoted user’s open console shows "not allowed"', async () => {
    await page.getByTestId('user-search').fill(doctorEmail);
    const row = userRow(page, doctorEmail);
    await expect(page.getByTestId('user-row')).toHaveCount(1);
    await row.getByRole('button', { name: 'Hacer administrador' }).click();
    await expect(page.getByTestId('confirm-dialog')).toContainText('de Médico a Administrador');
    await page.getByTestId('confirm').click();
    await expect(row).toHaveAttribute('data-role', 'admin');

    // The new admin's app shows the console (after a reload reads the account again).
    await doctorPage.reload();
    await expect(doctorPage.getByTestId('nav-admin')).toBeVisible();
    await doctorPage.getByTestId('nav-admin').click();
    await expect(doctorPage.getByTestId('users-table')).toBeVisible();

    // And back (the notice's undo): doctor again.
    await page.getByTestId('undo').click();
    await expect(row).toHaveAttribute('data-role', 'doctor');
    const calls = doctorAdminCalls.length;
    // Their open app still thinks they are admin: the next admin screen's request gets 403,
    // shown as "not allowed" (never a crash), and the admin entries go away.
    await doctorPage.getByRole('link', { name: 'Modelos' }).click();
    await expect(doctorPage.getByTestId('not-allowed')).toBeVisible();
    await expect(doctorPage.getByTestId('nav-admin')).toHaveCount(0);
    const after = doctorAdminCalls.slice(calls);
    expect(after.length).toBeGreaterThan(0);
    expect(after.every((c) => c.status === 403), JSON.stringify(after)).toBe(true);
  });

  test('uploads weights: a refused file shows the reason; with a manifest it is staged', async () => {
    const before = await getJson<ModelVersionJson[]>(api, '/admin/models', adminHeaders);
    demoVersion = before.find((v) => v.status === 'active')?.version ?? '';
    expect(demoVersion).not.toBe('');
    await page.getByRole('link', { name: 'Modelos' }).click();
    await expect(page.getByRole('heading', { name: 'Modelos' })).toBeVisible();
    await expect(page.getByTestId('serving')).toHaveAttribute('data-version', demoVersion);
    await expect(modelRow(page, demoVersion)).toHaveAttribute('data-status', 'active');

    await page.getByTestId('weights-input').setInputFiles(NOT_A_MODEL);
    await page.getByRole('button', { name: 'Subir y validar' }).click();
    await expect(page.getByTestId('upload-error')).toContainText('El modelo no es válido.');
    await expect(page.getByTestId('upload-reason')).toContainText('Motivo:');

    await page.getByTestId('weights-input').setInputFiles(WEIGHTS);
    await page.getByTestId('manifest-input').setInputFiles(MANIFEST);
    await expect(page.getByTestId('manifest-name')).toHaveText('candidate.json');
    await page.getByRole('button', { name: 'Subir y validar' }).click();
    await expect(page.getByTestId('upload-progress')).toBeVisible();
    await expect(page.getByTestId('notice')).toContainText('registrada y preparada', { timeout: 180_000 });
    const after = await getJson<ModelVersionJson[]>(api, '/admin/models', adminHeaders);
    const added = after.filter((v) => !before.some((b) => b.version === v.version));
    expect(added).toHaveLength(1);
    candidate = added[0]?.version ?? '';
    expect(added[0]).toMatchObject({ status: 'staged', demo: false });
    const stored = await getJson<{ manifest: { referral: { band: number } } }>(api, `/admin/models/${candidate}`, adminHeaders);
    expect(stored.manifest.referral.band).toBe(0.15); // the manifest sent with it
    await expect(modelRow(page, candidate)).toHaveAttribute('data-status', 'staged');
    await expect(modelRow(page, candidate)).toContainText(ADMIN_EMAIL);
    await shot(page, 'admin-models-es');
  });

  test('activates it (the confirmation names the version it replaces), health-ready names it, rolls back', async () => {
    await modelRow(page, candidate).getByRole('button', { name: `Activar: ${candidate}` }).click();
    const dialog = page.getByTestId('confirm-dialog');
    await expect(dialog).toContainText(`Reemplazará a la versión activa ${demoVersion}`);
    await shot(page, 'admin-models-activate-es');
    await dialog.getByTestId('confirm').click();
    await expect(modelRow(page, candidate)).toHaveAttribute('data-status', 'active', { timeout: 120_000 });
    await expect(page.getByTestId('serving')).toHaveAttribute('data-version', candidate, { timeout: 60_000 });
    // Every process serves it (health-ready through nginx answers from either).
    await expect
      .poll(async () => {
        const seen = new Set<string>();
        for (let i = 0; i < 6; i += 1) seen.add(((await getJson<{ model: { version: string } }>(api, '/health/ready', {})).model.version));
        return [...seen];
      }, { timeout: 60_000 })
      .toEqual([candidate]);

    // Roll back with the notice's undo: it asks again, naming the version it replaces.
    await page.getByTestId('undo').click();
    await expect(dialog).toContainText(`Reemplazará a la versión activa ${candidate}`);
    await dialog.getByTestId('confirm').click();
    await expect(modelRow(page, demoVersion)).toHaveAttribute('data-status', 'active', { timeout: 120_000 });
    await expect(modelRow(page, candidate)).toHaveAttribute('data-status', 'staged');
    await expect(page.getByTestId('serving')).toHaveAttribute('data-version', demoVersion, { timeout: 60_000 });
  });

  test('sets a shadow rate on the staged version', async () => {
    await modelRow(page, candidate).getByRole('button', { name: `Tasa en sombra: ${candidate}` }).click();
    await page.getByTestId('shadow-input').fill('abc');
    await expect(page.getByTestId('shadow-input')).toHaveAttribute('aria-invalid', 'true');
    await page.getByTestId('shadow-input').fill('100');
    await page.getByTestId('confirm').click();
    await expect(modelRow(page, candidate).getByTestId('shadow-rate')).toHaveText(/100\s?%/);
    const row = await getJson<ModelVersionJson>(api, `/admin/models/${candidate}`, adminHeaders);
    expect(row.shadow_rate).toBe(1);
  });

  test('a version’s evidence after predictions with feedback equals the API’s metrics; two side by side', async () => {
    // Evaluations by the doctor, each with feedback (confirmed, corrected, confirmed,
    // incorrect without a class, ...). The active (demo) version answers; the staged one
    // classifies each in shadow once every process has built it: evaluate until the API
    // counts at least four shadowed ones.
    const doctorHeaders = await bearer(api, doctorEmail, PASSWORD);
    let made = 0;
    const evaluate = async () => {
      const response = await api.post(`${API}/predict`, {
        headers: doctorHeaders,
        multipart: { file: { name: `retina-${made}.jpg`, mimeType: 'image/jpeg', buffer: readFileSync(RETINA) }, patient_ref: `ADM-${made}` },
      });
      expect(response.status(), await response.text()).toBe(201);
      const body = (await response.json()) as { id: number; result: { class_code: string }; probabilities: { class_code: string }[] };
      const other = body.probabilities.map((p) => p.class_code).find((c) => c !== body.result.class_code) ?? '';
      const kind = made % 4;
      const feedback = kind === 1 ? { verdict: 'incorrect', correct_class: other } : kind === 3 ? { verdict: 'incorrect' } : { verdict: 'correct' };
      const put = await api.put(`${API}/history/${body.id}/feedback`, { headers: doctorHeaders, data: feedback });
      expect(put.status(), await put.text()).toBe(200);
      made += 1;
    };
    const shadowed = async () => (await getJson<{ shadow: { compared: number } | null }>(api, `/admin/models/${candidate}/metrics`, adminHeaders)).shadow?.compared ?? 0;
    await expect
      .poll(
        async () => {
          await evaluate();
          return shadowed();
        },
        { timeout: 120_000, message: 'evaluations classified in shadow' },
      )
      .toBeGreaterThanOrEqual(4);
    expect(made).toBeGreaterThanOrEqual(4);

    for (const version of [demoVersion, candidate]) {
      // The page and the API read the same numbers (again, if a shadow sample still in
      // flight landed between the two reads).
      await expect(async () => {
        const metrics = await getJson<{
          predictions: number;
          with_feedback: number;
          accuracy: number | null;
          accuracy_ci95: [number, number] | null;
          per_class: Record<string, { precision: number | null; recall: number | null; support: number }>;
          confusion: { predicted: string; confirmed: string | null; count: number }[];
          ece: number | null;
          reliability: { low: number; count: number; confidence: number; accuracy: number }[];
          shadow: { compared: number; agreement: number | null; accuracy: number | null } | null;
        }>(api, `/admin/models/${version}/metrics`, adminHeaders);
        await page.goto(`/admin/models/${version}`);
        const evidence = page.locator(`[data-testid="evidence"][data-version="${version}"]`);
        await expect(evidence).toBeVisible();
        const value = async (testId: string) => evidence.getByTestId(testId).getAttribute('data-value');
        expect(await value('ev-predictions')).toBe(String(metrics.predictions));
        expect(await value('ev-with-feedback')).toBe(String(metrics.with_feedback));
        expect(await value('ev-accuracy')).toBe(metrics.accuracy === null ? '' : String(metrics.accuracy));
        expect(await value('ev-ece')).toBe(metrics.ece === null ? '' : String(metrics.ece));
        if (metrics.accuracy_ci95) {
          await expect(evidence.getByTestId('ev-ci')).toHaveAttribute('data-low', String(metrics.accuracy_ci95[0]));
          await expect(evidence.getByTestId('ev-ci')).toHaveAttribute('data-high', String(metrics.accuracy_ci95[1]));
        }
        for (const [code, c] of Object.entries(metrics.per_class)) {
          const row = evidence.locator(`[data-testid="ev-class"][data-code="${code}"]`);
          await expect(row.locator('[data-metric="precision"]')).toHaveAttribute('data-value', c.precision === null ? '' : String(c.precision));
          await expect(row.locator('[data-metric="recall"]')).toHaveAttribute('data-value', c.recall === null ? '' : String(c.recall));
          await expect(row.locator('[data-metric="support"]')).toHaveAttribute('data-value', String(c.support));
        }
        // Every confusion cell the API counts, and the page's cells add up to the same total.
        for (const cell of metrics.confusion) {
          await expect(evidence.locator(`[data-testid="ev-cell"][data-predicted="${cell.predicted}"][data-confirmed="${cell.confirmed ?? ''}"]`)).toHaveAttribute(
            'data-value',
            String(cell.count),
          );
        }
        const shown = await evidence.getByTestId('ev-cell').evaluateAll((cells) => cells.reduce((s, c) => s + Number(c.getAttribute('data-value')), 0));
        expect(shown).toBe(metrics.confusion.reduce((s, c) => s + c.count, 0));
        await expect(evidence.getByTestId('reliability-bin')).toHaveCount(metrics.reliability.length);
        if (metrics.shadow) {
          expect(await value('ev-shadow-compared')).toBe(String(metrics.shadow.compared));
          expect(await value('ev-shadow-agreement')).toBe(metrics.shadow.agreement === null ? '' : String(metrics.shadow.agreement));
          expect(await value('ev-shadow-accuracy')).toBe(metrics.shadow.accuracy === null ? '' : String(metrics.shadow.accuracy));
        }
        if (version === demoVersion) expect(metrics.with_feedback).toBeGreaterThanOrEqual(made);
        else expect(metrics.shadow?.compared).toBeGreaterThanOrEqual(4);
      }).toPass({ timeout: 60_000 });
      if (version === demoVersion) await shot(page, 'admin-evidence-es');
    }

    // Side by side: both versions and the comparison.
    await page.goto('/admin/models');
    await modelRow(page, demoVersion).getByRole('checkbox').check();
    await modelRow(page, candidate).getByRole('checkbox').check();
    await page.getByTestId('compare').click();
    await expect(page).toHaveURL(new RegExp(`/admin/models/${demoVersion}\\?compare=${candidate}`));
    await expect(page.getByTestId('evidence')).toHaveCount(2);
    await expect(page.getByTestId('comparison')).toBeVisible();
    await expect(page.locator('[data-testid="compare-row"][data-metric="with_feedback"] td').first()).toHaveAttribute('data-value', /\d+/);
    await shot(page, 'admin-compare-es');
  });

  test('the learning loop: a dataset from feedback, a training job whose progress moves, its evaluation; promotion refused while a gate fails', async () => {
    test.setTimeout(600_000);
    // The doctor's labelled uploads: each its own photograph and patient, labels spread
    // over the classes (a confirmation where the label is the predicted class).
    const doctorHeaders = await bearer(api, doctorEmail, PASSWORD);
    const patients = JSON.parse(readFileSync(join(FIXTURES, 'loop', 'patients.json'), 'utf-8')) as string[];
    const codes = ['glaucoma', 'diabetic_retinopathy', 'normal', 'cataract'];
    for (const [i, patient] of patients.entries()) {
      const file = join(FIXTURES, 'loop', `upload-${String(i).padStart(2, '0')}.jpg`);
      const response = await api.post(`${API}/predict`, {
        headers: doctorHeaders,
        multipart: { file: { name: `loop-${i}.jpg`, mimeType: 'image/jpeg', buffer: readFileSync(file) }, patient_ref: patient },
      });
      expect(response.status(), await response.text()).toBe(201);
      const body = (await response.json()) as { id: number; result: { class_code: string }; quality: { gradable: boolean } };
      const label = codes[i % codes.length] ?? 'normal';
      const feedback = label === body.result.class_code ? { verdict: 'correct' } : { verdict: 'incorrect', correct_class: label };
      expect((await api.put(`${API}/history/${body.id}/feedback`, { headers: doctorHeaders, data: feedback })).status()).toBe(200);
    }

    // Datasets: the imported test set is locked; a training set built from feedback.
    await page.getByRole('link', { name: 'Datos' }).click();
    await expect(page.getByRole('heading', { name: 'Conjuntos de datos', level: 1 })).toBeVisible();
    const locked = page.locator('[data-testid="dataset-row"][data-name="e2e locked test"]');
    await expect(locked).toHaveAttribute('data-locked', 'true');
    await expect(locked.getByTestId('locked')).toBeVisible();
    await expect(locked).toContainText('Importado');
    await page.getByTestId('dataset-name').fill('e2e train');
    await expect(page.getByTestId('dataset-cutoff')).not.toHaveValue('');
    await page.getByRole('button', { name: 'Crear conjunto' }).click();
    await expect(page.getByTestId('notice')).toContainText('«e2e train»');
    const trainRow = page.locator('[data-testid="dataset-row"][data-name="e2e train"]');
    await expect(trainRow).toHaveAttribute('data-locked', 'false');
    const datasets = await getJson<{ id: number; name: string; items: number; by_class: Record<string, number> }[]>(api, '/admin/datasets', adminHeaders);
    const train = datasets.find((d) => d.name === 'e2e train');
    expect(train?.items).toBeGreaterThanOrEqual(patients.length);
    await expect(trainRow.getByTestId('items')).toHaveAttribute('data-value', String(train?.items));
    for (const [code, n] of Object.entries(train?.by_class ?? {})) {
      if (n > 0) await expect(trainRow.locator(`[data-testid="by-class"] [data-key="${code}"]`)).toHaveAttribute('data-value', String(n));
    }
    await shot(page, 'admin-datasets-es');

    // A small training job from a recipe; its progress moves while it runs.
    await page.getByRole('link', { name: 'Entrenamiento' }).click();
    await expect(page.getByRole('heading', { name: 'Entrenamiento', level: 1 })).toBeVisible();
    const pick = async (testId: string, option: RegExp) => {
      await page.getByTestId(testId).click();
      await page.getByRole('option', { name: option }).click();
    };
    await pick('pick-recipe', /^e2e-small v1$/);
    await expect(page.getByTestId('recipe-summary')).toContainText('3 épocas');
    await pick('pick-train', /^e2e train/);
    await pick('pick-test', /e2e locked test/);
    await page.getByRole('button', { name: 'Iniciar', exact: true }).click();
    await expect(page.getByTestId('notice')).toContainText('en cola');
    const jobs = await getJson<{ id: number; status: string }[]>(api, '/admin/training-jobs', adminHeaders);
    const jobId = Math.max(...jobs.map((j) => j.id));
    const job = page.locator(`[data-testid="job-row"][data-id="${jobId}"]`);
    await expect(job).toBeVisible();
    await shot(page, 'admin-training-es');

    // A second job queues behind it: cancelled, after a confirmation.
    await page.getByRole('button', { name: 'Iniciar', exact: true }).click();
    await expect(page.locator(`[data-testid="job-row"][data-id="${jobId + 1}"]`)).toBeVisible();
    await page.getByRole('button', { name: `Cancelar trabajo #${jobId + 1}` }).click();
    await expect(page.getByTestId('confirm-dialog')).toContainText(`¿Cancelar el trabajo ${jobId + 1}?`);
    await page.getByTestId('confirm').click();
    await expect(page.locator(`[data-testid="job-row"][data-id="${jobId + 1}"]`)).toHaveAttribute('data-status', 'cancelled', { timeout: 60_000 });

    // The page polls: record each progress state it shows until the job is done.
    const states = new Set<string>();
    await expect
      .poll(
        async () => {
          const progress = job.getByTestId('job-progress');
          const state = [await progress.getAttribute('data-phase'), await progress.getAttribute('data-epoch'), await progress.getAttribute('data-batches')].join('/');
          if (state !== '//') states.add(state);
          return job.getAttribute('data-status');
        },
        { timeout: 480_000, intervals: [250] },
      )
      .toMatch(/^(succeeded|failed)$/);
    const finished = await getJson<{ status: string; error: string | null; candidate_version: string | null }>(api, `/admin/training-jobs/${jobId}`, adminHeaders);
    expect(finished.status, finished.error ?? '').toBe('succeeded');
    expect(states.size, [...states].join(' ')).toBeGreaterThanOrEqual(2); // it moved

    // The evaluation: every gate with its verdict; one fails, so promotion is refused.
    const version = finished.candidate_version ?? '';
    await job.getByTestId('evaluation-link').click();
    await expect(page).toHaveURL(new RegExp(`/admin/models/${version}/evaluation`));
    const evaluation = await getJson<{ accuracy: number | null; gates: { name: string; passed: boolean }[]; passed: boolean }>(api, `/admin/models/${version}/evaluation`, adminHeaders);
    expect(evaluation.passed).toBe(false);
    await expect(page.getByTestId('eval-accuracy')).toHaveAttribute('data-value', evaluation.accuracy === null ? '' : String(evaluation.accuracy));
    await expect(page.getByTestId('gate')).toHaveCount(evaluation.gates.length);
    for (const gate of evaluation.gates) {
      await expect(page.locator(`[data-testid="gate"][data-name="${gate.name}"]`)).toHaveAttribute('data-passed', String(gate.passed));
    }
    const gate = page.locator('[data-testid="gate"][data-name="min_test_images_per_class"]');
    await expect(gate).toContainText('No cumple');
    await expect(gate).toContainText('≥ 100 requerido');
    await expect(page.getByTestId('promotion-refused')).toHaveAttribute('data-reason', 'GATES_NOT_MET');
    await expect(page.getByTestId('promotion-refused')).toContainText('Mínimo de imágenes de prueba por clase');
    await expect(page.getByTestId('promote')).toBeDisabled();
    await expect(page.getByTestId('lineage')).toContainText('e2e-small');
    await shot(page, 'admin-evaluation-es');

    // Activating it anyway (from the models page): the API's refusal, explained.
    await page.getByRole('link', { name: 'Modelos' }).click();
    await modelRow(page, version).getByRole('button', { name: `Activar: ${version}` }).click();
    await page.getByTestId('confirm').click();
    await expect(page.getByTestId('confirm-dialog').getByRole('alert')).toHaveText('Esta versión no supera sus criterios de evaluación: no se puede activar.');
    await page.getByTestId('confirm-dialog').getByRole('button', { name: 'Cancelar' }).click();
    await expect(modelRow(page, version)).toHaveAttribute('data-status', 'staged');
    const refused = await api.post(`${API}/admin/models/${version}/activate`, { headers: adminHeaders });
    expect(refused.status()).toBe(409);
    expect(((await refused.json()) as { code: string }).code).toBe('GATES_NOT_MET');
    trainedVersion = version;
  });

  test('the audit trail: filters, cursor pages, an event’s old and new values, the CSV equals the API’s', async () => {
    // Enough events of one kind for two pages: the doctor opens an evaluation 30 times.
    const doctorHeaders = await bearer(api, doctorEmail, PASSWORD);
    const list = await getJson<{ items: { id: number }[] }>(api, '/history?page_size=1', doctorHeaders);
    const id = list.items[0]?.id;
    for (let i = 0; i < 30; i += 1) await getJson(api, `/history/${id}`, doctorHeaders);
    await expect
      .poll(async () => (await getJson<{ items: unknown[] }>(api, `/admin/audit?action=prediction.view&actor_id=${doctorId}&limit=500`, adminHeaders)).items.length)
      .toBeGreaterThanOrEqual(30);

    await page.getByRole('link', { name: 'Auditoría' }).click();
    await expect(page.getByRole('heading', { name: 'Auditoría' })).toBeVisible();
    await expect(page.getByTestId('audit-row').first()).toBeVisible();
    await shot(page, 'admin-audit-es');

    // Filter: the doctor's views (actor picked by email, action from the list).
    await page.getByTestId('filter-actor').getByRole('combobox').fill(doctorEmail);
    await page.getByRole('option', { name: new RegExp(doctorEmail) }).click();
    await expect(page).toHaveURL(new RegExp(`actor=${doctorId}`));
    await page.getByTestId('filter-action').click();
    await page.getByRole('option', { name: 'Evaluación vista' }).click();
    await expect(page).toHaveURL(/action=prediction\.view/);
    const first = await getJson<{ items: { id: number }[]; next_cursor: string | null }>(api, `/admin/audit?action=prediction.view&actor_id=${doctorId}&limit=25`, adminHeaders);
    expect(first.next_cursor).not.toBeNull();
    const ids = () => page.getByTestId('audit-row').evaluateAll((rows) => rows.map((r) => Number(r.getAttribute('data-id'))));
    await expect.poll(ids).toEqual(first.items.map((e) => e.id));
    await page.getByTestId('audit-next').click();
    await expect(page).toHaveURL(new RegExp(`cursor=${first.next_cursor}`));
    const second = await getJson<{ items: { id: number }[] }>(api, `/admin/audit?action=prediction.view&actor_id=${doctorId}&limit=25&cursor=${first.next_cursor}`, adminHeaders);
    await expect.poll(ids).toEqual(second.items.map((e) => e.id));
    await page.getByTestId('audit-previous').click();
    await expect.poll(ids).toEqual(first.items.map((e) => e.id));

    // The CSV of the filtered events, downloaded through the app, equals the API's export.
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export').click()]);
    expect(download.suggestedFilename()).toMatch(/^audit-.*\.csv$/);
    const file = readFileSync(await download.path(), 'utf-8');
    const exported = await api.get(`${API}/admin/audit/export?action=prediction.view&actor_id=${doctorId}`, { headers: adminHeaders });
    expect(exported.status()).toBe(200);
    const expected = await exported.text();
    const rows = (text: string) => text.split(/\r?\n/).filter((line) => line !== '');
    expect(rows(file)).toEqual(rows(expected));
    expect(rows(file).length).toBeGreaterThanOrEqual(31); // header + the 30 views at least
    await expect(page.getByTestId('exported')).toHaveAttribute('data-rows', String(rows(expected).length - 1));

    // A role change: its old and new values.
    await page.goto(`/admin/audit?action=user.role&target_type=user&target_id=${doctorId}`);
    await expect(page.getByTestId('audit-row')).toHaveCount(2);
    await page.getByTestId('audit-row').last().getByRole('button').click();
    const dialog = page.getByTestId('event-dialog');
    await expect(dialog.locator('[data-field="role"] [data-testid="old"]')).toHaveText('doctor');
    await expect(dialog.locator('[data-field="role"] [data-testid="new"]')).toHaveText('admin');
    await shot(page, 'admin-audit-event-es');
    await dialog.getByRole('button', { name: 'Cerrar' }).click();
  });

  test('every admin screen in English: axe and screenshots', async () => {
    await page.goto('/admin/users');
    await chooseLanguage(page, 'English');
    await expect(page.getByRole('heading', { name: 'Users' })).toBeVisible();
    await shot(page, 'admin-users-en');
    await page.goto('/admin/models');
    await expect(page.getByRole('heading', { name: 'Models' })).toBeVisible();
    await expect(modelRow(page, candidate)).toBeVisible();
    await shot(page, 'admin-models-en');
    await page.goto(`/admin/models/${demoVersion}`);
    await expect(page.getByRole('heading', { name: `Evidence of version ${demoVersion}` })).toBeVisible();
    await expect(page.getByTestId('ev-accuracy')).toBeVisible();
    await shot(page, 'admin-evidence-en');
    await page.goto(`/admin/models/${demoVersion}?compare=${candidate}`);
    await expect(page.getByTestId('comparison')).toBeVisible();
    await shot(page, 'admin-compare-en');
    await page.goto('/admin/datasets');
    await expect(page.getByRole('heading', { name: 'Datasets', level: 1 })).toBeVisible();
    await expect(page.getByTestId('dataset-row').first()).toBeVisible();
    await shot(page, 'admin-datasets-en');
    await page.goto('/admin/training');
    await expect(page.getByRole('heading', { name: 'Training', level: 1 })).toBeVisible();
    await expect(page.getByTestId('job-row').first()).toBeVisible();
    await shot(page, 'admin-training-en');
    await page.goto(`/admin/models/${trainedVersion}/evaluation`);
    await expect(page.getByRole('heading', { name: `Evaluation of version ${trainedVersion}` })).toBeVisible();
    await expect(page.getByTestId('promotion-refused')).toContainText('Cannot be promoted');
    await shot(page, 'admin-evaluation-en');
    await page.goto('/admin/audit');
    await expect(page.getByRole('heading', { name: 'Audit trail' })).toBeVisible();
    await expect(page.getByTestId('audit-row').first()).toBeVisible();
    await shot(page, 'admin-audit-en');
    await doctorPage.goto('/evaluate');
    await chooseLanguage(doctorPage, 'English');
    await doctorPage.goto('/admin/audit');
    await expect(doctorPage.getByRole('heading', { name: 'Not allowed' })).toBeVisible();
    await shot(doctorPage, 'admin-not-allowed-en');
    await chooseLanguage(doctorPage, 'Español');
    await chooseLanguage(page, 'Español');
    expect(adminId).toBeGreaterThan(0);
  });
});
