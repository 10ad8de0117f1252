// Builds the JavaScript side: src/ bundled to ESM in dist/ by esbuild, declarations by tsc.
// The kernel .wasm files stay in build/ and are found at run time relative to the module.
// The library bundle is self-contained (its tokenizer and template packages are bundled in, so
// it runs in browsers without a resolver); the CLI is for Node and imports its packages.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

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
});
if (existsSync('src/cli.ts')) {
  await build({ ...common, entryPoints: ['src/cli.ts'], platform: 'node', packages: 'external' });
}
execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
