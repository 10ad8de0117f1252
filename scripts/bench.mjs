// npm run bench [-- --quick] [-- --e2e] [-- --only kernels,llama,decode,peers,e2e] [-- --runtime node|deno|bun|all]
// npm run bench -- --summary [the flags of those runs]: only rewrite bench/results/runtimes.md from each
// runtime's latest results (e.g. after --runtime deno and --runtime bun run separately)
//
// Bundles bench/run.ts (which reaches into src/ for the kernels and the decoder, and includes
// vega/vega-lite for the plot) into build/bench.mjs, then runs it:
//   node: with --experimental-wasm-relaxed-simd, so that Node 20 measures both kernel builds;
//   deno: `deno run -A build/bench.mjs`, Deno from npm (scripts/ensure-runtime.mjs installs it);
//   bun:  the `bun` devDependency;
//   chromium: Node serves bench/chromium.html, whose bundle (build/bench-chromium.mjs, from
//         bench/chromium-page.ts) runs the kernels, llama and decode rows in headless Chromium;
//   all:  the four in turn (each writes its own bench/results/latest[-runtime].*).
// The peers (onnxruntime-web/-node, tfjs) are Node packages and are measured under Node only.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { ensureRuntime } from './ensure-runtime.mjs';
import { nodeBuiltinsAbsent, packageUrls } from './package-urls.mjs';

const args = process.argv.slice(2);
if (args.includes('--summary')) {
  args.splice(args.indexOf('--summary'), 1);
  summarize();
  process.exit(0);
}

await build({
  entryPoints: ['bench/run.ts'],
  outfile: 'build/bench.mjs',
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'es2022',
  logLevel: 'warning',
  // vega's optional canvas renderer: absent, and not used (SVG renderer only); playwright-core
  // (--runtime chromium) finds its own files relative to itself, so it stays a package, and
  // examples/serve.mjs (the same path from build/) runs as a command when it is the entry.
  external: ['canvas', 'playwright-core', '../examples/serve.mjs'],
  // src/ finds the kernels and the built-in model relative to itself; so must the bundle in build/.
  plugins: [packageUrls],
  // esbuild's ESM output for platform node: give bundled CommonJS a `require`.
  banner: { js: "import { createRequire as __benchRequire } from 'node:module'; const require = __benchRequire(import.meta.url);" },
});

// The page side of --runtime chromium (node: imports resolve to an empty module there).
await build({
  entryPoints: ['bench/chromium-page.ts'],
  outfile: 'build/bench-chromium.mjs',
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  logLevel: 'warning',
  plugins: [packageUrls, nodeBuiltinsAbsent],
});

const i = args.indexOf('--runtime');
const wanted = i >= 0 ? args[i + 1] : 'node';
if (i >= 0) args.splice(i, 2);

function deno() {
  try {
    return ensureRuntime('deno');
  } catch (e) {
    console.error(`deno: could not be installed (${e.message}); skipped`);
    return undefined;
  }
}

function run(runtime) {
  if (runtime === 'node') {
    return spawnSync(process.execPath, ['--experimental-wasm-relaxed-simd', 'build/bench.mjs', ...args], { stdio: 'inherit' }).status;
  }
  if (runtime === 'deno') {
    const bin = deno();
    if (!bin) return 1;
    return spawnSync(bin, ['run', '-A', 'build/bench.mjs', ...args], { stdio: 'inherit' }).status;
  }
  if (runtime === 'chromium') {
    return spawnSync(process.execPath, ['build/bench.mjs', '--chromium', ...args], { stdio: 'inherit' }).status;
  }
  if (runtime === 'bun') {
    const bin = 'node_modules/.bin/bun';
    if (!existsSync(bin)) { console.error('bun: node_modules/.bin/bun is missing (npm ci installs it); skipped'); return 1; }
    return spawnSync(bin, ['build/bench.mjs', ...args], { stdio: 'inherit' }).status;
  }
  console.error(`unknown runtime ${runtime} (node, deno, bun, chromium or all)`);
  return 2;
}

const runtimes = wanted === 'all' ? ['node', 'deno', 'bun', 'chromium'] : wanted.split(',');
let status = 0;
for (const r of runtimes) {
  if (runtimes.length > 1) console.error(`\n=== ${r} ===`);
  status ||= run(r) ?? 1;
}
if (runtimes.length > 1) summarize();
process.exit(status);

/**
 * --runtime all: bench/results/runtimes.md, the headline rows of each runtime's run side by side.
 * The runs follow one another, so compare the ratios (each to its own run's probes) more than the
 * absolute figures.
 */
function summarize() {
  const partial = args.includes('--quick') || args.includes('--only') ? '.partial' : '';
  const runs = [];
  // Every runtime's latest results that are there (a run of some runtimes keeps the others' files).
  for (const r of ['node', 'deno', 'bun', 'chromium']) {
    const file = `bench/results/latest${r === 'node' ? '' : `-${r}`}${partial}.json`;
    if (existsSync(file)) runs.push(JSON.parse(readFileSync(file, 'utf8')));
  }
  if (!runs.length) return;
  const f = (x, d = 1) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(d) : '—');
  const kernel = (run, name, shape, note = '') => run.kernels.find((k) => k.build === run.build)?.rows.find((r) => r.kernel === name && r.shape === shape && (r.note ?? '').includes(note));
  const llama = (run, model, test) => run.llama.find((r) => r.model.startsWith(model) && r.test === test && (r.threads ?? 1) === 1);
  const decode = (run, variant, ctx) => run.decode.find((r) => r.variant === variant && r.context === ctx);
  const rows = [
    ['compute peak probe, GFLOP/s', (r) => f(r.kernels.find((k) => k.build === r.build)?.peakGflops)],
    ['DRAM read probe, GB/s', (r) => f(r.kernels.find((k) => k.build === r.build)?.dramGBs)],
    ['matmul_nt 128×2048×2048, GFLOP/s (÷ peak)', (r) => { const k = kernel(r, 'matmul_nt', '128×2048×2048'); return k ? `${f(k.gflops)} (${f(k.ratio, 2)})` : '—'; }],
    ['matvec 1×4096×4096 as the decoder stores it (2 column panels), GB/s (÷ DRAM)', (r) => { const k = kernel(r, 'matvec', '1×4096×4096', 'panels'); return k ? `${f(k.gbs)} (${f(k.ratio, 2)})` : '—'; }],
    ['default model pp512, tokens/s (floor/measured)', (r) => { const x = llama(r, 'fortune', 'pp512'); return x ? `${f(x.tokensPerS, 0)} (${f(x.ratio, 2)})` : '—'; }],
    ['default model tg64 @ 512, tokens/s (floor/measured)', (r) => { const x = llama(r, 'fortune', 'tg64 @ 512'); return x ? `${f(x.tokensPerS, 0)} (${f(x.ratio, 2)})` : '—'; }],
    ['V2-Lite dims pp512, tokens/s (floor/measured)', (r) => { const x = llama(r, 'V2-Lite', 'pp512'); return x ? `${f(x.tokensPerS)} (${f(x.ratio, 2)})` : '—'; }],
    ['V2-Lite dims tg64 @ 4096, tokens/s (floor/measured)', (r) => { const x = llama(r, 'V2-Lite', 'tg64 @ 4096'); return x ? `${f(x.tokensPerS)} (${f(x.ratio, 2)})` : '—'; }],
    ['MLA absorbed decode @ 16384, ms/token', (r) => f(decode(r, 'MLA absorbed', 16384)?.msPerToken, 2)],
    ['MHA decode @ 16384, ms/token', (r) => f(decode(r, 'MHA', 16384)?.msPerToken, 2)],
    ...[1, 2].map((t) => [`end to end, ours ${t}t, ms/token (floor/measured: the run's; step by step)`, (r) => { const x = r.e2e?.rows?.find((y) => y.runtime.startsWith('mla-wasm') && y.threads === t); return x ? `${f(x.msPerToken, 2)} (${f(x.ratio, 2)}; ${f(x.ratioInterleaved ?? x.ratioBeside, 2)})` : '—'; }]),
  ];
  const md = [
    `Cross-runtime summary of the latest runs under each runtime (\`npm run bench -- --runtime all${args.length ? ' ' + args.join(' ') : ''}\` runs them in turn; their commands are in the column heads), on ${runs[0].machineLine?.split(', Node')[0] ?? 'this machine'}. Each ratio is to its own run's probes; the peers and the end-to-end ONNX comparison run under Node only.`,
    '',
    `| | ${runs.map((r) => `${r.machine.runtime}, ${r.date.slice(0, 16).replace('T', ' ')} UTC, \`${r.command}\``).join(' | ')} |`,
    `|---|${runs.map(() => '---').join('|')}|`,
    ...rows.map(([label, get]) => `| ${label} | ${runs.map(get).join(' | ')} |`),
  ].join('\n') + '\n';
  writeFileSync(`bench/results/runtimes${partial}.md`, md);
  console.log('\n' + md);
}
