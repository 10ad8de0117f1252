// npm run bench [-- --quick] [-- --e2e] [-- --only kernels,llama,decode,peers,e2e] [-- --runtime node|deno|bun|all]
//
// Bundles bench/run.ts (which reaches into src/ for the kernels and the decoder, and includes
// vega/vega-lite for the plot) into build/bench.mjs, then runs it:
//   node: with --experimental-wasm-relaxed-simd, so that Node 20 measures both kernel builds;
//   deno: `npx deno run -A build/bench.mjs`, Deno from npm (deno@2.9.6, installed with --no-save if
//         missing: as a devDependency its lock entry would lack other platforms' binaries);
//   bun:  the `bun` devDependency;
//   all:  the three in turn (each writes its own bench/results/latest[-runtime].*).
// The peers (onnxruntime-web/-node, tfjs) are Node packages and are measured under Node only.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const DENO = 'deno@2.9.6';

await build({
  entryPoints: ['bench/run.ts'],
  outfile: 'build/bench.mjs',
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'es2022',
  logLevel: 'warning',
  // vega's optional canvas renderer: absent, and not used (SVG renderer only).
  external: ['canvas'],
  // esbuild's ESM output for platform node: give bundled CommonJS a `require`.
  banner: { js: "import { createRequire as __benchRequire } from 'node:module'; const require = __benchRequire(import.meta.url);" },
});

const args = process.argv.slice(2);
const i = args.indexOf('--runtime');
const wanted = i >= 0 ? args[i + 1] : 'node';
if (i >= 0) args.splice(i, 2);

function ensureDeno() {
  if (existsSync('node_modules/deno/package.json')) return true;
  console.error(`installing ${DENO} (npm install --no-save) …`);
  const r = spawnSync('npm', ['install', '--no-save', DENO], { stdio: 'inherit' });
  return r.status === 0;
}

function run(runtime) {
  if (runtime === 'node') {
    return spawnSync(process.execPath, ['--experimental-wasm-relaxed-simd', 'build/bench.mjs', ...args], { stdio: 'inherit' }).status;
  }
  if (runtime === 'deno') {
    if (!ensureDeno()) { console.error('deno: could not be installed; skipped'); return 1; }
    return spawnSync('npx', ['--no-install', 'deno', 'run', '-A', 'build/bench.mjs', ...args], { stdio: 'inherit' }).status;
  }
  if (runtime === 'bun') {
    const bin = 'node_modules/.bin/bun';
    if (!existsSync(bin)) { console.error('bun: node_modules/.bin/bun is missing (npm ci installs it); skipped'); return 1; }
    return spawnSync(bin, ['build/bench.mjs', ...args], { stdio: 'inherit' }).status;
  }
  console.error(`unknown runtime ${runtime} (node, deno, bun or all)`);
  return 2;
}

const runtimes = wanted === 'all' ? ['node', 'deno', 'bun'] : [wanted];
let status = 0;
for (const r of runtimes) {
  if (runtimes.length > 1) console.error(`\n=== ${r} ===`);
  status ||= run(r) ?? 1;
}
process.exit(status);
