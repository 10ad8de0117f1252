// Builds what the package runs: the kernels (assembly/ → build/kernels-*.wasm, four targets of
// asconfig.json) when an assembly/ file is newer than them, the pool's worker (src/host/worker.ts →
// build/worker-node.cjs, build/worker-web.js and the module of their text, build/worker-source.js:
// always, it takes milliseconds),
// then src/ bundled to ESM in dist/ by esbuild and the declarations by tsc. `--force` rebuilds the
// kernels regardless.
// The library bundle is self-contained (its tokenizer and template packages are bundled in, so
// it runs in browsers without a resolver); the CLI is for Node and imports its packages.
// npm start and npm test run this first, so a fresh clone needs only `npm ci`.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { packageUrls } from './package-urls.mjs';
import { workerFiles } from './worker-source.mjs';

const TARGETS = ['simd', 'relaxed', 'simd-mt', 'relaxed-mt'];

function newest(dir) {
  return Math.max(0, ...readdirSync(dir, { recursive: true })
    .map((f) => path.join(dir, f)).filter((f) => statSync(f).isFile()).map((f) => statSync(f).mtimeMs));
}

function kernelsStale() {
  const sources = Math.max(newest('assembly'), statSync('asconfig.json').mtimeMs);
  return TARGETS.some((t) => !existsSync(`build/kernels-${t}.wasm`) || statSync(`build/kernels-${t}.wasm`).mtimeMs < sources);
}

if (process.argv.includes('--force') || kernelsStale()) {
  for (const target of TARGETS) {
    execFileSync(process.execPath, ['node_modules/assemblyscript/bin/asc.js', 'assembly/index.ts', '--target', target], { stdio: 'inherit' });
  }
}

// Written only when changed: an unchanged worker keeps its files' times.
for (const [name, text] of Object.entries(await workerFiles())) {
  const file = path.join('build', name);
  if (!existsSync(file) || readFileSync(file, 'utf8') !== text) writeFileSync(file, text);
}

// dist/ is made anew: declarations of a moved or deleted source must not ship.
rmSync('dist', { recursive: true, force: true });
const common = {
  outdir: 'dist',
  bundle: true,
  format: 'esm',
  target: 'es2022',
  sourcemap: true,
  logLevel: 'warning',
};
await build({
  ...common,
  entryPoints: ['src/index.ts'],
  platform: 'neutral',
  // Node-only modules are imported lazily inside functions; keep them as imports.
  external: ['node:*'],
  plugins: [packageUrls],
});
await build({ ...common, entryPoints: ['src/cli.ts'], platform: 'node', packages: 'external', plugins: [packageUrls] });
execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
