/** Helpers of the web app's Playwright suite: mail codes, axe, screenshots. */
import { readFileSync, readdirSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

import AxeBuilder from '@axe-core/playwright';
import { expect } from '@playwright/test';
import type { Page } from '@playwright/test';

export const MAIL_DIR = process.env.OCUPREDICT_MAIL_DIR ?? '';
export const SHOT_DIR = process.env.OCUPREDICT_WEB_SCREENSHOTS ?? join(import.meta.dirname, 'screenshots');
export const FIXTURES = process.env.OCUPREDICT_WEB_FIXTURES ?? '';
export const PASSWORD = 'correct-horse-battery-42';
export const API = '/api/v1';

interface Mail {
  to: string[];
  subject: string;
  text: string;
}

function mails(): { name: string; mail: Mail }[] {
  return readdirSync(MAIL_DIR)
    .filter((name) => name.endsWith('.json'))
    .sort((a, b) => Number.parseInt(a) - Number.parseInt(b))
    .map((name) => ({ name, mail: JSON.parse(readFileSync(join(MAIL_DIR, name), 'utf-8')) as Mail }));
}

/** The 6-digit code of the newest mail to `email` (waits for it). */
export async function codeFor(email: string, count = 1): Promise<string> {
  let code = '';
  await expect
    .poll(
      () => {
        const to = mails().filter(({ mail }) => mail.to.some((t) => t.toLowerCase().includes(email.toLowerCase())));
        if (to.length < count) return '';
        code = /\b(\d{6})\b/.exec(to[to.length - 1]?.mail.text ?? '')?.[1] ?? '';
        return code;
      },
      { timeout: 30_000, message: `a code mailed to ${email}` },
    )
    .not.toBe('');
  return code;
}

export function uniqueEmail(tag: string): string {
  return `${tag}-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.com`;
}

/** axe-core: no serious or critical violation on the page as it is now. */
export async function checkA11y(page: Page, screen: string): Promise<void> {
  // A select's menu that is still fading out (a loaded machine) is half transparent: axe
  // would judge its contrast mid-animation. The screen is checked once it has closed.
  await expect(page.locator('[role="listbox"], .MuiPopover-root, .MuiMenu-root')).toHaveCount(0);
  const results = await new AxeBuilder({ page }).analyze();
  const bad = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const summary = bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(' | ')}`);
  expect(summary, `axe on ${screen}`).toEqual([]);
}

/** The screen at 1280x800 and at 390x844 (a phone), then back to the desktop size. */
export async function screenshots(page: Page, name: string): Promise<void> {
  mkdirSync(SHOT_DIR, { recursive: true });
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.screenshot({ path: join(SHOT_DIR, `${name}-1280x800.png`), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  // Nothing wider than the phone: no horizontal scrolling of the page itself.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow, `${name} fits 390 px`).toBeLessThanOrEqual(1);
  await page.screenshot({ path: join(SHOT_DIR, `${name}-390x844.png`), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
}

/** Both checks of a screen. */
export async function screen(page: Page, name: string): Promise<void> {
  await checkA11y(page, name);
  await screenshots(page, name);
}
