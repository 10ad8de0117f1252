// node scripts/run-ts.mjs bench/wllama-peer.ts [--types q8_0,q4_0,f32] [--threads 1,2] [--rounds 4] [--steps 8] [--check 4]
//
// Ours against wllama (@wllama/wllama: llama.cpp compiled to WebAssembly) in headless Chromium, on
// the same GGUF files bench/llama-peers.ts gives native llama.cpp (bench/llama-files.ts). Node
// serves this checkout on 127.0.0.1, cross-origin isolated (examples/serve.mjs), with the GGUF
// folder linked in under build/; every other host is unresolvable in the browser, so nothing
// comes from the network. Each side runs in a page of its own (bench/wllama-page.ts), on one file
// at one thread count; for each file the runner asks the pages in turn for one round (a pp512
// and `steps` decode steps at 512+ of context), `rounds` times. Before timing, each side's
// greedy continuation of the prompt (`check` tokens) is compared: a sign that wllama ran the model.
import type { AddressInfo } from 'node:net';
import { existsSync, lstatSync, mkdirSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
// @ts-expect-error: a plain .mjs script without declarations
import { nodeBuiltinsAbsent, packageUrls } from '../scripts/package-urls.mjs';
import { CHROMIUM_ARGS, chromiumPath } from './chromium.js';
import { CONFIG, CONTEXT, GGUF_DIR, ggufFile, median, prompt, promptText, type GgufType } from './llama-files.js';
import type { PeerReady, PeerRound, PeerSpec } from './wllama-page.js';

type Side = PeerSpec['side'];
const SIDES: Side[] = ['mla-wasm', 'wllama'];
const argv = process.argv.slice(2);
const arg = (name: string) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined; };
const log = (s: string) => console.error(s);

/** The page bundle, built/wllama-page.mjs; esbuild and playwright-core by names in variables, so that this script's own bundle leaves them to Node. */
async function bundlePage(): Promise<void> {
  const esbuild = 'esbuild';
  const { build }: typeof import('esbuild') = await import(esbuild);
  await build({
    entryPoints: ['bench/wllama-page.ts'], outfile: 'build/wllama-page.mjs', bundle: true, format: 'esm', platform: 'browser',
    target: 'es2022', logLevel: 'warning', plugins: [packageUrls, nodeBuiltinsAbsent],
  });
}

/** build/wllama-gguf → the GGUF folder, so that the page's server serves the files from its own origin. */
function linkGgufDir(): string {
  const link = path.join('build', 'wllama-gguf');
  try { if (lstatSync(link).isSymbolicLink()) unlinkSync(link); } catch { /* not there yet */ }
  if (!existsSync(link)) symlinkSync(GGUF_DIR, link);
  return link;
}

interface Entry { spec: PeerSpec; page: import('playwright-core').Page; ready: PeerReady; rounds: PeerRound[] }

async function main(): Promise<void> {
  const types = (arg('--types') ?? 'q8_0,q4_0,f32').split(',') as GgufType[];
  const threadCounts = (arg('--threads') ?? '1,2').split(',').map(Number);
  const rounds = Number(arg('--rounds') ?? 4), steps = Number(arg('--steps') ?? 8), check = Number(arg('--check') ?? 4);
  const load = (stage: string) => { const l = `${os.loadavg()[0].toFixed(2)} (${stage})`; log(`  load average ${l}`); return l; };
  const loads = [load('start')];

  await bundlePage();
  for (const type of types) await ggufFile(type, log);
  const ggufDir = linkGgufDir();

  const pw = 'playwright-core';
  const { chromium }: typeof import('playwright-core') = await import(pw);
  // Not bundled (from build/, the same path): bundled, serve.mjs would take itself for the entry and run as a command.
  const { serve } = await import(new URL('../examples/serve.mjs', import.meta.url).href);
  const server = await serve({ root: '.', port: 0 });
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // Pages in the background (all but one) must not be slowed; no host but 127.0.0.1 resolves.
  const browser = await chromium.launch({
    executablePath: chromiumPath(),
    args: [...CHROMIUM_ARGS, '--disable-backgrounding-occluded-windows', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
  });
  const offsite: string[] = [];
  const entries: Entry[] = [];
  try {
    const context = await browser.newContext();
    context.on('request', (r) => { if (!r.url().startsWith(origin) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) offsite.push(r.url()); });
    for (const type of types) {
      const phase: Entry[] = [];
      for (const threads of threadCounts) {
        for (const side of SIDES) {
          const spec: PeerSpec = {
            side, type, threads, ggufUrl: `${origin}/${ggufDir}/${type}.gguf`,
            wasmUrl: `${origin}/node_modules/@wllama/wllama/esm/wasm/wllama.wasm`, text: promptText(), ids: prompt(), steps, check,
          };
          const page = await context.newPage();
          page.on('console', (m) => { if (process.env.WLLAMA_LOG || m.type() === 'error' || m.type() === 'warning' || m.text().startsWith('wllama response')) log(`    [${side} ${type} ${threads}t] ${m.text().slice(0, 800)}`); });
          page.on('pageerror', (e) => log(`    [${side} ${type} ${threads}t] page error: ${e.message}`));
          await page.goto(`${origin}/bench/wllama.html`);
          await page.waitForFunction(() => 'peer' in globalThis);
          if (!await page.evaluate(() => crossOriginIsolated)) log('    the page is not cross-origin isolated: no threads');
          const ready = await page.evaluate((s) => (globalThis as unknown as { peer: { open(s: PeerSpec): Promise<PeerReady> } }).peer.open(s), spec);
          log(`  ${side} ${type} ${threads}t: ${ready.ok ? `${ready.version}, ${ready.threads} threads, loaded in ${(ready.loadMs! / 1000).toFixed(1)} s${ready.greedy ? `, greedy after the prompt ${ready.greedy.join(' ')}` : ''}` : `failed: ${ready.note}`}`);
          if (ready.ok) phase.push({ spec, page, ready, rounds: [] }); else await page.close();
        }
      }
      loads.push(load(`${type} loaded`));
      for (let r = 0; r < rounds; r++) {
        for (const e of [...phase]) {
          let round: PeerRound;
          try {
            round = await e.page.evaluate(() => (globalThis as unknown as { peer: { round(): Promise<PeerRound> } }).peer.round());
          } catch (err) {
            log(`  ${e.spec.side} ${type} ${e.spec.threads}t failed, left out: ${String((err as Error).message).split('\n')[0]}`);
            phase.splice(phase.indexOf(e), 1);
            continue;
          }
          e.rounds.push(round);
          log(`  ${e.spec.side} ${type} ${e.spec.threads}t, round ${r + 1}: pp512 ${(round.ppMs / 1000).toFixed(1)} s, tg ${median(round.tgMs).toFixed(1)} ms (median step)${round.tokens ? `, tokens ${round.tokens.slice(0, check).join(' ')}` : ''}`);
        }
      }
      loads.push(load(`${type} done`));
      for (const e of phase) await e.page.close();
      entries.push(...phase);
      // After each file, so that a later file's failure (memory, for F32) leaves these figures.
      report(entries, { rounds, steps, check, loads, offsite, browser: browser.version() });
    }
  } finally {
    await browser.close();
    server.close();
  }
}

function report(entries: Entry[], run: { rounds: number; steps: number; check: number; loads: string[]; offsite: string[]; browser: string }): void {
  // A round's decode figure: its steps' total time / their count, as llama.cpp's server reports it.
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const rows = entries.map((e) => {
    const tg = e.rounds.map((x) => mean(x.tgMs));
    const walls = e.rounds.flatMap((x) => (x.wallMs === undefined ? [] : [x.wallMs / (x.ppMs + x.tgMs[0] * Math.max(run.steps, run.check))]));
    return {
      side: e.spec.side, version: e.ready.version, type: e.spec.type, threads: e.spec.threads, loadMs: e.ready.loadMs, top: e.ready.top,
      greedy: e.ready.greedy ?? e.rounds[0]?.tokens?.slice(0, run.check) ?? [],
      // wllama's rounds must agree with each other (greedy, the same prompt each time).
      deterministic: e.rounds.every((x) => x.tokens === undefined || x.tokens.join() === e.rounds[0].tokens!.join()),
      ppTokensPerS: CONTEXT / median(e.rounds.map((x) => x.ppMs)) * 1000, tgMs: median(tg), tgBest: Math.min(...tg),
      wallOverClock: walls.length ? median(walls) : undefined,
      // Each round's figures, for ratios paired round by round (same minutes, same neighbours).
      tgMsByRound: tg, ppMsByRound: e.rounds.map((x) => x.ppMs), rounds: e.rounds,
    };
  });
  const cmd = `node scripts/run-ts.mjs bench/wllama-peer.ts ${argv.join(' ')}`.trim();
  const md: string[] = [`Command: \`${cmd}\`, ${new Date().toISOString().slice(0, 16)} UTC; headless Chromium ${run.browser}; ` +
    `${os.cpus()[0]?.model.trim()}, ${os.cpus().length} cores. 1-minute load average ${run.loads.join(', ')}. ` +
    `${run.rounds} rounds per file, each side in turn: one pp512 and ${Math.max(run.steps, run.check)} decode steps at ${CONTEXT}+ of context. ` +
    `Requests to hosts other than 127.0.0.1: ${run.offsite.length ? run.offsite.join(', ') : 'none'}.`, '',
  '| engine | GGUF | threads | pp512 tokens/s | tg ms/token, median of rounds (best) | ours ×, decode | ours ×, prefill | wllama: request wall time / its own clock | greedy tokens after the prompt |',
  '|---|---|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    const ours = rows.find((o) => o.side === 'mla-wasm' && o.type === r.type && o.threads === r.threads);
    const theirs = ours && r !== ours;
    const decode = theirs ? median(r.tgMsByRound.map((t, i) => t / ours.tgMsByRound[i])).toFixed(2) : '';
    const prefill = theirs ? median(ours.ppMsByRound.map((t, i) => r.ppMsByRound[i] / t)).toFixed(2) : '';
    const wall = r.wallOverClock !== undefined ? r.wallOverClock.toFixed(3) : '';
    const same = !theirs ? '' : r.greedy.join() === ours.greedy.join() ? ' (as ours)'
      : ` (not as ours; their first is ours' ${ours.top!.indexOf(r.greedy[0]) + 1 || '> 20'}th)`;
    md.push(`| ${r.version} | ${r.type.toUpperCase()} | ${r.threads} | ${r.ppTokensPerS.toFixed(1)} | ${r.tgMs.toFixed(2)} (${r.tgBest.toFixed(2)}) | ${decode} | ${prefill} | ${wall} | ${r.greedy.join(' ')}${same}${r.deterministic ? '' : ', not the same every round'} |`);
  }
  md.push('', '"ours ×": the median over rounds of their time / ours in the same round (> 1: ours faster). A round\'s decode time: its steps\' total / their count. Ours by wall time in the page; ' +
    'wllama by llama.cpp\'s own clock (its server\'s timings: prompt_ms, predicted_ms / (predicted_n - 1)), which leaves out its JavaScript and worker messaging.');
  console.log(md.join('\n'));
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/wllama-peers.partial.json', JSON.stringify({ config: CONFIG, context: CONTEXT, ...run, rows }, null, 2));
  writeFileSync('bench/results/wllama-peers.partial.md', md.join('\n') + '\n');
}

await main();
