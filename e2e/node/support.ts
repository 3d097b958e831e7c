/**
 * Shared pieces of the end-to-end scripts: settings from the environment, the client
 * package configured as a front-end would (`configure()` with a token store), a strict
 * status check around every client call, and the one-time codes the server emails
 * (captured by the aiosmtpd file sink that e2e/run.py starts, one JSON file per message).
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

import { Auth, configure, memoryTokens } from '@ocupredict/client';
import type { TokenPair, User } from '@ocupredict/client';

export function env(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set (run the e2e scripts through \`make e2e\`)`);
  }
  return value;
}

export const BASE_URL = env('OCUPREDICT_URL').replace(/\/+$/, '');
export const MAIL_DIR = env('OCUPREDICT_MAIL_DIR');

/** The client talks to the live server; the store's access token goes with every call,
 * and a 401 is retried once after POST /auth/refresh (the package's token refresh). */
export const tokens = memoryTokens();
configure({ baseUrl: BASE_URL, tokens });

export class UnexpectedStatus extends Error {}

type Outcome<T> = ({ data: T; error: undefined } | { data: undefined; error: unknown }) & {
  request: Request;
  response: Response;
};

/**
 * Await a generated-client call and insist on one status. Anything else (including a
 * network failure) throws with the method, URL, status and body: the run fails loudly.
 */
export async function expectStatus<T>(
  label: string,
  call: Promise<Outcome<T>>,
  status: number,
): Promise<{ data: T; response: Response }> {
  let outcome: Outcome<T>;
  try {
    outcome = await call;
  } catch (err) {
    throw new UnexpectedStatus(`${label}: request failed before a response: ${String(err)}`);
  }
  const { request, response } = outcome;
  if (response.status !== status) {
    const body = outcome.error === undefined ? outcome.data : outcome.error;
    throw new UnexpectedStatus(
      `${label}: ${request.method} ${request.url} answered ${response.status}, expected ` +
        `${status}: ${JSON.stringify(body)}`,
    );
  }
  console.log(`  ok  ${label} -> ${response.status}`);
  return { data: outcome.data as T, response };
}

/** The `{detail, code}` of an expected error response, checked. */
export async function expectError(
  label: string,
  call: Promise<Outcome<unknown>>,
  status: number,
  code: string,
): Promise<void> {
  const outcome = await call;
  const error = outcome.error as { code?: unknown; detail?: unknown } | undefined;
  if (outcome.response.status !== status || error?.code !== code) {
    throw new UnexpectedStatus(
      `${label}: expected ${status} ${code}, got ${outcome.response.status} ` +
        `${JSON.stringify(outcome.error ?? outcome.data)}`,
    );
  }
  console.log(`  ok  ${label} -> ${status} ${code}`);
}

export function check(condition: unknown, message: string): asserts condition {
  if (!condition) {
    throw new UnexpectedStatus(`check failed: ${message}`);
  }
}

interface CapturedMail {
  to: string[];
  subject: string;
  text: string;
}

async function mailsTo(email: string): Promise<CapturedMail[]> {
  const names = (await readdir(MAIL_DIR)).filter((n) => n.endsWith('.json')).sort();
  const mails: CapturedMail[] = [];
  for (const name of names) {
    const mail = JSON.parse(await readFile(path.join(MAIL_DIR, name), 'utf8')) as CapturedMail;
    if (mail.to.includes(email.toLowerCase())) {
      mails.push(mail);
    }
  }
  return mails;
}

/** The 6-digit code of the `count`-th email sent to `email` (waits up to 15 s for it). */
export async function emailedCode(email: string, count = 1): Promise<string> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const mails = await mailsTo(email);
    const mail = mails[count - 1];
    if (mail) {
      const codes = new Set(mail.text.match(/(?<!\d)\d{6}(?!\d)/g) ?? []);
      check(codes.size === 1, `one code in the mail to ${email}, found ${[...codes].join(',')}`);
      const [code] = codes;
      console.log(`  ok  code emailed to ${email} ("${mail.subject}")`);
      return code as string;
    }
    if (Date.now() > deadline) {
      throw new UnexpectedStatus(`no email #${count} for ${email} in ${MAIL_DIR}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export function uniqueEmail(prefix: string): string {
  return `${prefix}-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.com`;
}

/** Register, read the emailed code, verify: a verified account and its first token pair. */
export async function verifiedAccount(
  email: string,
  password: string,
  name: string,
): Promise<{ user: User; tokens: TokenPair }> {
  const { data: user } = await expectStatus(
    'auth.register',
    Auth.register({ body: { email, password, name, locale: 'en' } }),
    201,
  );
  const code = await emailedCode(email);
  const { data: tokens } = await expectStatus(
    'auth.verify',
    Auth.verify({ body: { email, code } }),
    200,
  );
  return { user, tokens };
}

/** Run `main`, print the failure and exit 1 on any error. */
export function run(name: string, main: () => Promise<void>): void {
  const started = Date.now();
  main().then(
    () => {
      console.log(`${name}: passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    },
    (err: unknown) => {
      console.error(`${name}: FAILED: ${err instanceof Error ? err.message : String(err)}`);
      if (err instanceof Error && !(err instanceof UnexpectedStatus) && err.stack) {
        console.error(err.stack);
      }
      process.exitCode = 1;
    },
  );
}
