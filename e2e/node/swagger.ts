/**
 * Swagger UI in a real headless Chromium (Debian's /usr/bin/chromium via playwright-core;
 * no browser is downloaded): open /docs, Authorize with email + password (the OAuth2
 * password flow posts the form to /auth/login), run GET /auth/me with "Try it out" ->
 * "Execute", and require a 200 whose rendered body shows the user's email. Screenshots go
 * to OCUPREDICT_SCREENSHOT_DIR (their paths are printed).
 *
 * /docs loads the Swagger UI bundle from the jsDelivr CDN (FastAPI's default page). This
 * machine has no internet, so those requests are answered from the swagger-ui-dist npm
 * package pinned in package.json (the same files the CDN serves for swagger-ui-dist@5);
 * every other request that leaves the server under test is aborted and fails the check.
 *
 * Environment: OCUPREDICT_URL, OCUPREDICT_MAIL_DIR, OCUPREDICT_SCREENSHOT_DIR,
 * CHROMIUM_PATH (default /usr/bin/chromium).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

import { chromium } from 'playwright-core';

import { BASE_URL, check, env, run, uniqueEmail, verifiedAccount } from './support.js';

const require = createRequire(import.meta.url);
const SWAGGER_DIST = path.dirname(require.resolve('swagger-ui-dist/package.json'));
const CDN_PREFIX = 'https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/';
const CONTENT_TYPES: Record<string, string> = {
  '.js': 'application/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
};

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

run('swagger ui check', async () => {
  const screenshotDir = env('OCUPREDICT_SCREENSHOT_DIR');
  const email = uniqueEmail('swagger');
  const password = 'swagger-Password-0123';
  await verifiedAccount(email, password, 'Dr. Swagger');

  const profile = await mkdtemp(path.join(os.tmpdir(), 'ocupredict-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
    timeout: 60_000,
  });
  const outside: string[] = [];
  const pageErrors: string[] = [];
  const page = await context.newPage();
  try {
    await context.route('**/*', async (route) => {
      const url = route.request().url();
      if (url.startsWith(BASE_URL + '/')) {
        return route.continue();
      }
      if (url.startsWith(CDN_PREFIX)) {
        const file = path.join(SWAGGER_DIST, url.slice(CDN_PREFIX.length).split(/[?#]/)[0] ?? '');
        if (!file.startsWith(SWAGGER_DIST + path.sep)) {
          return route.abort();
        }
        return route.fulfill({
          status: 200,
          contentType: CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream',
          body: await readFile(file),
        });
      }
      if (!url.startsWith('https://fastapi.tiangolo.com/img/favicon')) {
        outside.push(url);
      }
      return route.abort();
    });

    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.setDefaultTimeout(20_000);

    const docs = await page.goto(`${BASE_URL}/docs`);
    check(docs?.status() === 200, `GET /docs answered ${docs?.status()}`);
    await page.locator('.swagger-ui .info .title').waitFor();
    console.log(`  ok  /docs rendered: ${(await page.title()).trim()}`);

    // Authorize: the OAuth2 password flow form (username = email, password).
    await page.locator('.auth-wrapper button.authorize').click();
    const modal = page.locator('.dialog-ux .modal-ux');
    await modal.locator('#oauth_username').fill(email);
    await modal.locator('#oauth_password').fill(password);
    const [tokenResponse] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/auth/login')),
      modal.locator('button.modal-btn.authorize').click(),
    ]);
    check(tokenResponse.status() === 200, `Authorize -> /auth/login ${tokenResponse.status()}`);
    // Once authorized the modal offers Logout instead of Authorize.
    await modal.locator('button.modal-btn', { hasText: 'Logout' }).waitFor();
    console.log('  ok  Authorize with email + password -> token');
    await modal.locator('button.btn-done').click();
    await modal.waitFor({ state: 'detached' });
    check(
      (await page.locator('.auth-wrapper button.authorize.locked').count()) === 1,
      'the Authorize button shows the lock',
    );

    // GET /auth/me: expand, Try it out, Execute.
    const op = page.locator('#operations-auth-auth-read_me');
    await op.locator('.opblock-summary').first().click();
    await op.locator('button.try-out__btn').click();
    const [meResponse] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/api/v1/auth/me')),
      op.locator('button.execute').click(),
    ]);
    check(meResponse.status() === 200, `Execute GET /auth/me -> ${meResponse.status()}`);
    const live = op.locator('.live-responses-table .response');
    await live.first().waitFor();
    const status = (await live.locator('.response-col_status').first().innerText()).trim();
    const body = await live.locator('.response-col_description').first().innerText();
    check(status === '200', `rendered status ${status}`);
    check(body.includes(email), `rendered body shows ${email}: ${body.slice(0, 300)}`);
    const curl = await op.locator('.curl-command').innerText();
    check(/Authorization: Bearer \S+/.test(curl), 'the request carried the bearer token');
    console.log(`  ok  Try it out -> Execute GET /auth/me -> 200 with ${email}`);

    await live.first().scrollIntoViewIfNeeded();
    const full = path.join(screenshotDir, 'swagger-auth-me.png');
    await page.screenshot({ path: full, fullPage: true });
    const block = path.join(screenshotDir, 'swagger-auth-me-operation.png');
    await op.screenshot({ path: block });
    console.log(`  screenshot: ${full}`);
    console.log(`  screenshot: ${block}`);

    check(outside.length === 0, `requests left the machine: ${outside.join(', ')}`);
    check(pageErrors.length === 0, `page errors: ${pageErrors.join(' | ')}`);
  } catch (err) {
    const shot = path.join(screenshotDir, 'swagger-failure.png');
    await page.screenshot({ path: shot, fullPage: true }).catch(() => undefined);
    console.error(`  screenshot of the failure: ${shot}`);
    throw err;
  } finally {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  }
});
