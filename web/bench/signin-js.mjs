// Prints, one a line, the URL of every JavaScript file the page at argv[2] loads in
// Debian's Chromium (used by bench/web_budget.py).
import { chromium } from '@playwright/test';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage();
const scripts = new Set();
page.on('response', (response) => {
  if (response.request().resourceType() === 'script') scripts.add(response.url());
});
await page.goto(process.argv[2], { waitUntil: 'networkidle' });
await page.getByRole('heading', { level: 1 }).waitFor();
for (const url of scripts) console.log(url);
await browser.close();
