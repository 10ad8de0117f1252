// The browser: headless Chromium (Debian's /usr/bin/chromium, which .ci/run installs) driven by
// playwright-core opens
//   - examples/browser/ served by examples/serve.mjs from this repository, and
//   - the README's browser snippet (index.html) in a project that installed the packed package,
//     served by the README's own command (the package's examples/serve.mjs),
// waits for the streamed text, and checks it is Node's greedy output for the same prompt and
// length: on 2 threads (Web Workers over the shared memory) where the page is cross-origin
// isolated, and on 1 when the same page comes without the isolation headers. A screenshot of the
// example goes to test-results/browser.png. And a model by hub name, kept in the Cache API.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
// @ts-expect-error: a plain .mjs script without declarations
import { serve } from '../examples/serve.mjs';
import { loadModel } from '../src/index.js';
import { nodeGreedy, PROMPT, root, snippet, TOKENS } from './runtimes/helpers.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
// CI must run this (.ci/run installs Chromium); elsewhere it is skipped when Chromium is missing.
const haveChromium = existsSync(CHROMIUM) || !!process.env.CI;

interface PageResult { ids: number[]; text: string; simd: 'simd' | 'relaxed'; threads: number; crossOriginIsolated: boolean }

let browser: Browser;
let server: Server;
let base: string;
let readmeServer: ChildProcess | undefined;

beforeAll(async () => {
  server = await serve({ root, port: 0 });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  server?.close();
  readmeServer?.kill();
});

/** Open `url`; `isolated: false` drops the server's cross-origin-isolation headers on the way in. */
async function open(url: string, { isolated = true } = {}): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1000, height: 720 } });
  if (!isolated) {
    await page.route('**/*', async (route) => {
      const response = await route.fetch();
      const headers = { ...response.headers() };
      delete headers['cross-origin-opener-policy'];
      delete headers['cross-origin-embedder-policy'];
      await route.fulfill({ response, headers });
    });
  }
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  // Count the separate updates of the text as it streams (one per token, not one at the end).
  await page.addInitScript(() => {
    const w = window as unknown as { textUpdates: number };
    w.textUpdates = 0;
    document.addEventListener('DOMContentLoaded', () => new MutationObserver(() => { w.textUpdates++; })
      .observe(document.getElementById('text')!, { characterData: true, childList: true, subtree: true }));
  });
  await page.goto(url);
  (page as Page & { errors: string[] }).errors = errors;
  return page;
}

describe.skipIf(!haveChromium)('browser (headless Chromium)', () => {
  it.each(['auto', 'simd'] as const)('examples/browser streams Node\'s greedy text on 2 threads (%s build)', async (simd) => {
    const page = await open(`${base}/examples/browser/?tokens=${TOKENS}&simd=${simd}&threads=2&prompt=${encodeURIComponent(PROMPT)}`);
    await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 60_000 });
    expect(await page.textContent('#status')).toBe(`Done: ${TOKENS} tokens.`);
    const got = await page.evaluate(() => (globalThis as unknown as { mlaResult: PageResult }).mlaResult);
    const ref = await nodeGreedy(got.simd);
    if (simd === 'auto') expect(got.simd).toBe('relaxed'); // Chromium compiles relaxed SIMD
    else expect(got.simd).toBe('simd');
    expect(got.ids).toEqual(ref.ids);
    expect(got.text).toBe(ref.text);
    // What the page shows: the prompt and the text streamed after it, speed, cache, threads.
    expect(await page.textContent('#text')).toBe(PROMPT + ref.text);
    expect(await page.evaluate(() => (window as unknown as { textUpdates: number }).textUpdates)).toBeGreaterThanOrEqual(TOKENS);
    expect(await page.textContent('#prefill')).toMatch(/^\d+ tokens in [\d.]+ ms, \d+ tokens\/s$/);
    expect(await page.textContent('#decode')).toMatch(new RegExp(`^${TOKENS} tokens in [\\d.]+ ms, \\d+ tokens/s$`));
    expect(await page.textContent('#cache')).toMatch(/1024 B per token; multi-head attention with the same heads: 7680 B per token \(7\.5× more\)/);
    // examples/serve.mjs sends the cross-origin-isolation headers: the kernels run on the page's
    // thread and a Web Worker over one shared memory, with Node's (one thread's) ids.
    expect(got.crossOriginIsolated).toBe(true);
    expect(got.threads).toBe(2);
    expect(await page.textContent('#threads')).toBe('on: 2 threads (crossOriginIsolated: yes)');
    expect((page as Page & { errors: string[] }).errors, JSON.stringify((page as Page & { errors: string[] }).errors)).toEqual([]);
    if (simd === 'auto') {
      mkdirSync(path.join(root, 'test-results'), { recursive: true });
      await page.screenshot({ path: path.join(root, 'test-results/browser.png'), fullPage: true });
    }
    await page.close();
  });

  it('a clock too coarse to time a token shows a dash for the speed, never Infinity (every update)', async () => {
    const page = await browser.newPage();
    // Time stands still: every span the page measures is 0 ms.
    await page.addInitScript(() => {
      const w = window as unknown as { rates: string[] };
      w.rates = [];
      performance.now = () => 1000;
      document.addEventListener('DOMContentLoaded', () => {
        for (const id of ['prefill', 'decode']) {
          const el = document.getElementById(id)!;
          new MutationObserver(() => w.rates.push(el.textContent ?? '')).observe(el, { characterData: true, childList: true, subtree: true });
        }
      });
    });
    await page.goto(`${base}/examples/browser/?tokens=8&threads=1&prompt=${encodeURIComponent(PROMPT)}`);
    await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 60_000 });
    expect(await page.textContent('#status')).toBe('Done: 8 tokens.');
    const rates = await page.evaluate(() => (window as unknown as { rates: string[] }).rates);
    expect(rates.length).toBeGreaterThanOrEqual(8);
    for (const r of rates) expect(r).toMatch(/^\d+ tokens in 0\.0 ms, – tokens\/s$/);
    await page.close();
  });

  it('by default the built-in model runs on one thread, and the page says why', async () => {
    const page = await open(`${base}/examples/browser/?tokens=4&prompt=${encodeURIComponent(PROMPT)}`);
    await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 60_000 });
    const got = await page.evaluate(() => (globalThis as unknown as { mlaResult: PageResult }).mlaResult);
    expect(got.crossOriginIsolated).toBe(true);
    expect(got.threads).toBe(1);
    expect(await page.textContent('#threads')).toBe('off: the default for a model under 48 MiB, ?threads=2 asks for two (crossOriginIsolated: yes)');
    await page.close();
  });

  it('without the cross-origin-isolation headers the same page falls back to 1 thread, with the same text', async () => {
    const page = await open(`${base}/examples/browser/?tokens=${TOKENS}&threads=2&prompt=${encodeURIComponent(PROMPT)}`, { isolated: false });
    await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 60_000 });
    expect(await page.textContent('#status')).toBe(`Done: ${TOKENS} tokens.`);
    const got = await page.evaluate(() => (globalThis as unknown as { mlaResult: PageResult }).mlaResult);
    expect(got.crossOriginIsolated).toBe(false);
    expect(got.threads).toBe(1);
    expect(await page.textContent('#threads')).toBe('off (crossOriginIsolated: no)');
    const ref = await nodeGreedy(got.simd);
    expect(got.ids).toEqual(ref.ids);
    expect(await page.textContent('#text')).toBe(PROMPT + ref.text);
    expect((page as Page & { errors: string[] }).errors, JSON.stringify((page as Page & { errors: string[] }).errors)).toEqual([]);
    await page.close();
  });

  it('loads a model by hub name through the Cache API: a failed download caches nothing, a reload fetches nothing', async () => {
    // The hub is this origin's /hub/, answered by the test (Playwright's routing) from models/fortune-mla.
    const files = Object.fromEntries(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']
      .map((f) => [f, readFileSync(path.join(root, 'models/fortune-mla', f))]));
    const requests: string[] = [];
    let fail500 = true;
    const page = await browser.newPage();
    await page.route(`${base}/hub/**`, async (route) => {
      const p = decodeURIComponent(new URL(route.request().url()).pathname).slice('/hub'.length);
      requests.push(p);
      if (p === '/api/models/org/fortune/tree/main') {
        return route.fulfill({ contentType: 'application/json',
          body: JSON.stringify(Object.entries(files).map(([f, b]) => ({ type: 'file', path: f, size: b.length, oid: 'x' }))) });
      }
      const file = /^\/org\/fortune\/resolve\/main\/(.+)$/.exec(p)?.[1];
      if (!file || !files[file]) return route.fulfill({ status: 404, body: 'Entry not found' });
      if (file === 'model.safetensors' && fail500) { fail500 = false; return route.fulfill({ status: 500, body: 'Internal Error' }); }
      return route.fulfill({ contentType: 'application/octet-stream', body: files[file] });
    });
    await page.goto(`${base}/package.json`); // any page of this origin: http://127.0.0.1 is a secure context, with `caches`
    const IDS = [1, 5, 9, 2];
    // A string, not a function: vitest would rewrite a function's import() for Node.
    const load = () => page.evaluate(`(async () => {
      const { loadModel } = await import('/dist/index.js');
      try {
        const model = await loadModel('org/fortune', { hubUrl: ${JSON.stringify(`${base}/hub`)}, threads: 1, simd: 'simd' });
        const logits = Array.from(model.forward(${JSON.stringify(IDS)}));
        model.dispose();
        return { logits };
      } catch (e) {
        return { code: e.code, message: e.message };
      }
    })()`) as Promise<{ logits?: number[]; code?: string; message?: string }>;
    const cachedUrls = () => page.evaluate(async () => (await (await caches.open('mla-wasm-hub')).keys()).map((r) => r.url));

    const failed = await load();
    expect(failed.code).toBe('FETCH_FAILED');
    expect(failed.message).toContain(`${base}/hub/org/fortune/resolve/main/model.safetensors`);
    expect(failed.message).toContain('500');
    expect((await cachedUrls()).filter((u) => u.endsWith('model.safetensors'))).toEqual([]);

    requests.length = 0;
    const first = await load();
    expect(requests).toContain('/org/fortune/resolve/main/model.safetensors');
    const model = await loadModel(path.join(root, 'models/fortune-mla'), { threads: 1, simd: 'simd' });
    expect(first.logits).toEqual(Array.from(model.forward(IDS)));
    model.dispose();

    requests.length = 0;
    await page.reload();
    const second = await load();
    expect(second.logits).toEqual(first.logits);
    expect(requests).toEqual([]);
    await page.close();
  });

  it('the README browser snippet, served by the README\'s command, streams Node\'s greedy text', async () => {
    const dir = inject('consumerDir');
    const section = snippet('Browser');
    writeFileSync(path.join(dir, 'index.html'), section.files['index.html']);
    expect(section.commands).toHaveLength(1);
    const [command, ...args] = section.commands[0].split(/\s+/);
    expect(command).toBe('node');
    // PORT=0: any free port; the server prints the address it got.
    readmeServer = spawn(process.execPath, args, { cwd: dir, env: { ...process.env, PORT: '0' }, stdio: ['ignore', 'pipe', 'inherit'] });
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      readmeServer!.stdout!.on('data', (d) => {
        out += d;
        const m = /http:\/\/127\.0\.0\.1:\d+\//.exec(out);
        if (m) resolve(m[0]);
      });
      readmeServer!.on('exit', (code) => reject(new Error(`the server exited (${code}): ${out}`)));
    });
    const page = await open(url);
    await page.waitForFunction(() => /^Done|Error/.test(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 60_000 });
    const status = await page.textContent('#status');
    const simd = /(simd|relaxed) SIMD/.exec(status ?? '')?.[1] as 'simd' | 'relaxed';
    expect(status).toBe(`Done: ${TOKENS} tokens, ${simd} SIMD.`);
    const ref = await nodeGreedy(simd);
    expect(await page.textContent('#text')).toBe(PROMPT + ref.text);
    expect(await page.evaluate(() => (window as unknown as { textUpdates: number }).textUpdates)).toBeGreaterThanOrEqual(TOKENS);
    expect((page as Page & { errors: string[] }).errors, JSON.stringify((page as Page & { errors: string[] }).errors)).toEqual([]);
    await page.close();
  });
});
