// npm run bench:threads [-- --threads 2] [-- --rounds 5] [-- --model synthetic|default|both] [-- --any]:
// bundle scripts/bench-threads.ts (which reaches into src/) into build/, then run it with relaxed
// SIMD enabled (Node 20).
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';

await build({
  entryPoints: ['scripts/bench-threads.ts'],
  outfile: 'build/bench-threads.mjs',
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'es2022',
  logLevel: 'warning',
});
const r = spawnSync(process.execPath, ['--experimental-wasm-relaxed-simd', 'build/bench-threads.mjs', ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status ?? 1);
