// node scripts/run-ts.mjs <script.ts> [args…]: bundle a TypeScript script that reaches into src/
// (npm run bench:threads, npm run bench:profile) into build/, then run it with relaxed SIMD
// enabled (Node 20).
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { basename } from 'node:path';
import { packageUrls } from './package-urls.mjs';

const [entry, ...args] = process.argv.slice(2);
const outfile = `build/${basename(entry, '.ts')}.mjs`;
await build({ entryPoints: [entry], outfile, bundle: true, format: 'esm', platform: 'node', target: 'es2022', logLevel: 'warning', plugins: [packageUrls] });
const r = spawnSync(process.execPath, ['--experimental-wasm-relaxed-simd', outfile, ...args], { stdio: 'inherit' });
process.exit(r.status ?? 1);
