// Builds the JavaScript side: src/ bundled to ESM in dist/ by esbuild, declarations by tsc.
// The kernel .wasm files stay in build/ and are found at run time relative to the module.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const entryPoints = ['src/index.ts', 'src/cli.ts'].filter((f) => existsSync(f));
await build({
  entryPoints,
  outdir: 'dist',
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  // Node-only modules are imported lazily inside functions; keep them as imports.
  external: ['node:*'],
  sourcemap: true,
  logLevel: 'warning',
});
execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
