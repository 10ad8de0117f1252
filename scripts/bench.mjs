// npm run bench: bundle bench/run.ts (which reaches into src/ for the kernels and the decoder)
// into build/, then run it in a Node with relaxed SIMD enabled so that both builds are measured.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';

await build({
  entryPoints: ['bench/run.ts'],
  outfile: 'build/bench.mjs',
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'es2022',
  logLevel: 'warning',
});
const r = spawnSync(process.execPath, ['--experimental-wasm-relaxed-simd', 'build/bench.mjs', ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status ?? 1);
