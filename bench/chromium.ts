// `npm run bench -- --runtime chromium`, the Node side: serves this checkout on 127.0.0.1 with the
// cross-origin-isolation headers (examples/serve.mjs), opens bench/chromium.html in headless
// Chromium (Debian's, or $CHROMIUM) through playwright-core, relays the page's log, and returns
// what the page measured (bench/chromium-page.ts) for bench/run.ts to write up.
import type { AddressInfo } from 'node:net';
import type { ChromiumPageResult } from './chromium-page.js';

/** Debian's Chromium, or $CHROMIUM. */
export const chromiumPath = () => process.env.CHROMIUM ?? '/usr/bin/chromium';
/** Headless, no GPU, no background work of its own and no throttling of pages or timers. */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-background-timer-throttling', '--disable-renderer-backgrounding'];

export interface ChromiumRun extends ChromiumPageResult { version: string }

export async function benchInChromium(opts: { quick: boolean; sections: string[]; contexts: number[]; log: (s: string) => void }): Promise<ChromiumRun> {
  const { chromium } = await import('playwright-core');
  // @ts-expect-error: a plain .mjs script without declarations
  const { serve } = await import('../examples/serve.mjs');
  const server = await serve({ root: '.', port: 0 });
  const browser = await chromium.launch({ executablePath: chromiumPath(), args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage();
    page.on('console', (m) => opts.log(m.text()));
    page.on('pageerror', (e) => opts.log(`page error: ${e.message}`));
    const query = new URLSearchParams({ sections: opts.sections.join(','), contexts: opts.contexts.join(',') });
    if (opts.quick) query.set('quick', '');
    await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/bench/chromium.html?${query}`);
    const result = await page.evaluate(() => (globalThis as unknown as { benchDone: Promise<unknown> }).benchDone) as ChromiumPageResult | { error: string };
    if ('error' in result) throw new Error(`the bench page failed: ${result.error}`);
    if (!result.crossOriginIsolated) opts.log('the page is not cross-origin isolated: 1 thread only');
    return { ...result, version: browser.version() };
  } finally {
    await browser.close();
    server.close();
  }
}
