/**
 * The whole front-end journey through @ocupredict/client (installed from its npm pack
 * tarball), against a live server: register -> verify with the emailed code -> log in ->
 * upload a JPEG and a PNG to /predict -> list history -> read the detail (quality,
 * recommendation) and its heatmap -> fetch the image through image_url -> set feedback ->
 * read stats -> (as an administrator) the model registry and the served version's
 * metrics -> my activity -> the package's refresh on 401 -> refresh -> log out; then an
 * administrator reads the audit trail of that prediction and disables the account. Every
 * call must answer the status the contract promises; anything else fails the run (exit
 * code 1).
 *
 * Environment: OCUPREDICT_URL, OCUPREDICT_MAIL_DIR, OCUPREDICT_E2E_JPEG,
 * OCUPREDICT_E2E_PNG, OCUPREDICT_ADMIN_EMAIL, OCUPREDICT_ADMIN_PASSWORD (see e2e/run.py).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { Admin, Auth, Health, History, Home, Predict } from '@ocupredict/client';
import {
  check,
  env,
  expectError,
  expectStatus,
  run,
  tokens,
  uniqueEmail,
  verifiedAccount,
} from './support.js';

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

run('e2e flow', async () => {
  const jpegPath = env('OCUPREDICT_E2E_JPEG');
  const jpeg = new Uint8Array(await readFile(jpegPath));
  const email = uniqueEmail('flow');
  const password = 'e2e-Password-0123';

  console.log('health');
  const { data: ready } = await expectStatus('health.ready', Health.ready(), 200);
  check(ready.status === 'ready', `ready status ${ready.status}`);

  console.log('register, verify, log in');
  const { user } = await verifiedAccount(email, password, 'Dra. E2E Flow');
  check(user.email === email && !user.is_verified, `registered user ${JSON.stringify(user)}`);
  await expectError(
    'auth.login (wrong password)',
    Auth.login({ body: { username: email, password: 'not-the-password' } }),
    401,
    'INVALID_CREDENTIALS',
  );
  const { data: login } = await expectStatus(
    'auth.login',
    Auth.login({ body: { username: email, password } }),
    200,
  );
  check(login.token_type === 'bearer' && login.expires_in > 0, 'a bearer token pair');
  tokens.set(login);
  const { data: me } = await expectStatus('auth.readMe', Auth.readMe(), 200);
  check(me.email === email && me.is_verified && me.locale === 'en', `me ${JSON.stringify(me)}`);

  console.log('predict');
  const filename = path.basename(jpegPath);
  const { data: prediction } = await expectStatus(
    'predict.create',
    Predict.create({
      body: {
        file: new File([jpeg], filename, { type: 'image/jpeg' }),
        patient_ref: 'E2E-0001',
        eye: 'left',
      },
    }),
    201,
  );
  const total = prediction.probabilities.reduce((sum, p) => sum + p.probability, 0);
  check(Math.abs(total - 1) < 1e-3, `probabilities sum to ${total}`);
  check(prediction.image.content_type === 'image/jpeg', 'stored as image/jpeg');
  check(prediction.image.filename === filename, `filename ${prediction.image.filename}`);
  check(prediction.image.sha256 === sha256(jpeg), 'sha256 of the upload');
  check(prediction.patient_ref === 'E2E-0001' && prediction.eye === 'left', 'form fields');
  check(prediction.model.demo, 'the e2e server runs the demo weights');
  check(prediction.feedback === null, 'no feedback yet');
  check(
    prediction.quality !== null &&
      prediction.quality.score >= 0 &&
      prediction.quality.score <= 1 &&
      prediction.quality.gradable === (prediction.quality.reasons.length === 0),
    `quality ${JSON.stringify(prediction.quality)}`,
  );
  check(
    ['refer', 'routine', 'inconclusive', 'retake_image'].includes(prediction.recommendation ?? ''),
    `recommendation ${prediction.recommendation}`,
  );
  console.log(
    `      ${prediction.result.class_code} (${prediction.result.label}) ` +
      `p=${prediction.result.probability.toFixed(3)} in ${prediction.inference_ms.toFixed(1)} ms`,
  );
  const png = new Uint8Array(await readFile(env('OCUPREDICT_E2E_PNG')));
  const { data: fromPng } = await expectStatus(
    'predict.create (PNG)',
    Predict.create({ body: { file: new Blob([png], { type: 'image/png' }) } }),
    201,
  );
  check(fromPng.image.content_type === 'image/png', 'stored as image/png');
  check(fromPng.image.sha256 === sha256(png), 'sha256 of the PNG upload');
  check(fromPng.eye === 'unknown' && fromPng.patient_ref === null, 'form defaults');
  await expectError(
    'predict.create (not an image)',
    Predict.create({ body: { file: new Blob(['plain text'], { type: 'image/jpeg' }) } }),
    415,
    'UNSUPPORTED_MEDIA_TYPE',
  );

  console.log('history');
  const { data: page } = await expectStatus(
    'history.list',
    History.list({ query: { page: 1, page_size: 10, sort: 'created_at', order: 'asc' } }),
    200,
  );
  check(
    page.total === 2 && page.items[0]?.id === prediction.id && page.items[1]?.id === fromPng.id,
    `page ${JSON.stringify(page)}`,
  );
  const { data: found } = await expectStatus(
    'history.list (q=E2E)',
    History.list({ query: { q: 'E2E', feedback: 'none' } }),
    200,
  );
  check(found.total === 1, `filtered total ${found.total}`);
  const { data: detail } = await expectStatus(
    'history.read',
    History.read({ path: { id: prediction.id } }),
    200,
  );
  check(detail.id === prediction.id && detail.image_url.length > 0, 'detail with image_url');

  console.log('image');
  // image_url is signed: an <img> tag (no Authorization header) can load it.
  const viaUrl = await fetch(detail.image_url);
  check(viaUrl.status === 200, `GET image_url answered ${viaUrl.status}`);
  check(viaUrl.headers.get('content-type') === 'image/jpeg', 'image_url content type');
  check(sha256(new Uint8Array(await viaUrl.arrayBuffer())) === sha256(jpeg), 'image_url bytes');
  console.log('  ok  GET image_url (no Authorization header) -> 200, same bytes');
  const { data: blob } = await expectStatus(
    'history.image (bearer)',
    History.image({ path: { id: prediction.id }, parseAs: 'blob' }),
    200,
  );
  check(sha256(new Uint8Array(await blob.arrayBuffer())) === sha256(jpeg), 'history.image bytes');

  console.log('heatmap');
  const { data: heatmap } = await expectStatus(
    'history.heatmap',
    History.heatmap({ path: { id: prediction.id }, parseAs: 'blob' }),
    200,
  );
  const heatmapPng = new Uint8Array(await heatmap.arrayBuffer());
  check(
    heatmapPng[1] === 0x50 && heatmapPng[2] === 0x4e && heatmapPng[3] === 0x47,
    'the heatmap is a PNG',
  );
  await expectError(
    'history.heatmap (unknown class)',
    History.heatmap({ path: { id: prediction.id }, query: { class_code: 'keratitis' } }),
    422,
    'INVALID_CLASS_CODE',
  );

  console.log('feedback');
  const other = prediction.probabilities.find((p) => p.class_code !== prediction.result.class_code);
  check(other, 'another class to correct to');
  const { data: withFeedback } = await expectStatus(
    'history.setFeedback',
    History.setFeedback({
      path: { id: prediction.id },
      body: { verdict: 'incorrect', correct_class: other.class_code, comment: 'e2e check' },
    }),
    200,
  );
  check(
    withFeedback.feedback?.verdict === 'incorrect' &&
      withFeedback.feedback.correct_class === other.class_code,
    `feedback ${JSON.stringify(withFeedback.feedback)}`,
  );

  console.log('stats');
  const { data: stats } = await expectStatus(
    'home.stats',
    Home.stats({ query: { range: 'week', tz: 'UTC' } }),
    200,
  );
  check(stats.mine.total === 2 && stats.mine.with_feedback === 1, `mine ${JSON.stringify(stats.mine)}`);
  check(stats.mine.correct === 0 && stats.mine.correct_pct === 0, 'the one verdict is incorrect');
  check(stats.overall.total >= 1, 'overall counts everyone');

  console.log('model registry');
  await expectError('admin.listModels (a doctor)', Admin.listModels(), 403, 'FORBIDDEN');
  const { data: adminLogin } = await expectStatus(
    'auth.login (administrator)',
    Auth.login({
      body: { username: env('OCUPREDICT_ADMIN_EMAIL'), password: env('OCUPREDICT_ADMIN_PASSWORD') },
    }),
    200,
  );
  tokens.set(adminLogin);
  const { data: models } = await expectStatus('admin.listModels', Admin.listModels(), 200);
  const active = models.find((m) => m.status === 'active');
  check(active && active.version === prediction.model.version, 'the served version is active');
  const { data: metrics } = await expectStatus(
    'admin.modelMetrics',
    Admin.modelMetrics({ path: { version: active.version } }),
    200,
  );
  check(metrics.predictions >= 1 && metrics.with_feedback >= 1, `metrics ${JSON.stringify(metrics)}`);
  check(
    metrics.confusion.some(
      (c) => c.predicted === prediction.result.class_code && c.confirmed === other.class_code,
    ),
    'the correction is in the confusion matrix',
  );
  await expectError(
    'admin.retireModel (the active one)',
    Admin.retireModel({ path: { version: active.version } }),
    409,
    'MODEL_ACTIVE',
  );
  tokens.set(login);

  console.log('my activity; admin routes refused');
  const { data: activity } = await expectStatus('auth.myActivity', Auth.myActivity(), 200);
  const actions: string[] = activity.items.map((event) => event.action);
  check(
    ['auth.login', 'auth.login_failed', 'auth.verify'].every((a) => actions.includes(a)),
    `activity ${JSON.stringify(actions)}`,
  );
  await expectError('admin.listUsers (doctor)', Admin.listUsers(), 403, 'FORBIDDEN');

  console.log('refresh on 401 (the package), refresh, log out');
  tokens.set({ ...login, access_token: 'not-a-valid-access-token' });
  await expectStatus('auth.readMe (bad access token, refreshed by the package)', Auth.readMe(), 200);
  const renewed = tokens.get();
  check(renewed && renewed.refresh_token !== login.refresh_token, 'the package stored a new pair');
  check(renewed.refresh_token, 'bearer mode: the refresh token is in the body');
  const { data: refreshed } = await expectStatus(
    'auth.refresh',
    Auth.refresh({ body: { refresh_token: renewed.refresh_token } }),
    200,
  );
  check(refreshed.refresh_token, 'bearer mode: a refresh token in the body');
  check(refreshed.refresh_token !== renewed.refresh_token, 'a new refresh token');
  tokens.set(refreshed);
  await expectStatus('auth.readMe (new access token)', Auth.readMe(), 200);
  await expectStatus(
    'auth.logout',
    Auth.logout({ body: { refresh_token: refreshed.refresh_token } }),
    204,
  );
  await expectError(
    'auth.refresh (logged-out token)',
    Auth.refresh({ body: { refresh_token: refreshed.refresh_token } }),
    401,
    'INVALID_TOKEN',
  );
  await expectError('auth.readMe (ended session)', Auth.readMe(), 401, 'NOT_AUTHENTICATED');
  check(tokens.get() === undefined, 'the refused refresh cleared the token store');

  console.log('admin: audit trail, disable the account');
  const { data: admin } = await expectStatus(
    'auth.login (admin)',
    Auth.login({
      body: { username: env('OCUPREDICT_ADMIN_EMAIL'), password: env('OCUPREDICT_ADMIN_PASSWORD') },
    }),
    200,
  );
  tokens.set(admin);
  const { data: trail } = await expectStatus(
    'admin.listAudit',
    Admin.listAudit({ query: { target_type: 'prediction', target_id: String(prediction.id) } }),
    200,
  );
  const seen: string[] = trail.items.map((event) => event.action);
  check(
    seen.includes('prediction.view') && seen.includes('prediction.feedback'),
    `audit of the prediction ${JSON.stringify(seen)}`,
  );
  const { data: disabled } = await expectStatus(
    'admin.disableUser',
    Admin.disableUser({ path: { id: user.id } }),
    200,
  );
  check(!disabled.is_active, 'the account is disabled');
  await expectError(
    'auth.login (disabled account)',
    Auth.login({ body: { username: email, password } }),
    403,
    'ACCOUNT_DISABLED',
  );
});
