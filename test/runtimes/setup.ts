// Vitest global setup for the runtime tests (test/packaging, runtimes, readme and browser tests):
//   - rebuilds dist/ when a source file is newer than it (the runtimes run the built package);
//   - installs Deno (unsaved: see scripts/ensure-deno.mjs) when it is missing;
//   - packs the package with `npm pack` and installs the tarball into a fresh consumer project,
//     so that the tests import 'mla-wasm' as a user would, through `exports` and the `files` list.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
// @ts-expect-error: a plain .mjs script without declarations
import { ensureDeno } from '../../scripts/ensure-deno.mjs';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A project with the packed mla-wasm installed in node_modules. */
    consumerDir: string;
    /** The deno binary. */
    deno: string;
  }
}

const root = fileURLToPath(new URL('../..', import.meta.url));
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function newestMtime(dir: string, ext: RegExp): number {
  let newest = 0;
  for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && ext.test(entry.name)) {
      newest = Math.max(newest, statSync(path.join(entry.parentPath, entry.name)).mtimeMs);
    }
  }
  return newest;
}

export default function setup(project: TestProject): () => void {
  const dist = path.join(root, 'dist/index.js');
  const sources = Math.max(newestMtime('src', /\.ts$/), newestMtime('build', /\.(wasm|js)$/));
  if (!existsSync(dist) || statSync(dist).mtimeMs < sources) {
    execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'inherit' });
  }

  const deno = ensureDeno() as string;

  const dir = mkdtempSync(path.join(os.tmpdir(), 'mla-wasm-consumer-'));
  const packed = JSON.parse(execFileSync(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', dir],
    { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({
    name: 'mla-wasm-consumer', private: true, type: 'module',
    dependencies: { 'mla-wasm': `file:./${packed[0].filename}` },
  }, null, 2));
  execFileSync(npm, ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts'],
    { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] });

  project.provide('consumerDir', dir);
  project.provide('deno', deno);
  return () => rmSync(dir, { recursive: true, force: true });
}
