// Vitest global setup for the runtime tests (test/packaging, runtimes, readme and browser tests):
//   - rebuilds dist/ when a source file is newer than it (the runtimes run the built package);
//   - installs Deno and Node 24 (scripts/ensure-runtime.mjs) when they are missing;
//   - packs the package with `npm pack` and installs the tarball into a fresh consumer project,
//     so that the tests import 'mla-wasm' as a user would, through `exports` and the `files` list.
//     Its dependencies come from npm's cache when there, else from the registry, as for a user:
//     with an empty cache an offline install cannot work.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
// @ts-expect-error: a plain .mjs script without declarations
import { ensureRuntime } from '../../scripts/ensure-runtime.mjs';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A project with the packed mla-wasm installed in node_modules. */
    consumerDir: string;
    /** The deno binary. */
    deno: string;
    /** A Node 24 binary (the tests' own Node may be 20). */
    node24: string;
    /** What `npm install` of the packed package printed on stderr (a user must see no warning). */
    consumerInstallLog: string;
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

  const deno = ensureRuntime('deno') as string;
  const node24 = ensureRuntime('node24') as string;

  const dir = mkdtempSync(path.join(os.tmpdir(), 'mla-wasm-consumer-'));
  const packed = JSON.parse(execFileSync(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', dir],
    { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({
    name: 'mla-wasm-consumer', private: true, type: 'module',
    dependencies: { 'mla-wasm': `file:./${packed[0].filename}` },
  }, null, 2));
  const install = spawnSync(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund'],
    { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (install.status !== 0) throw new Error(`npm install of the packed package failed:\n${install.stderr}`);

  project.provide('consumerDir', dir);
  project.provide('deno', deno);
  project.provide('node24', node24);
  project.provide('consumerInstallLog', install.stderr);
  return () => rmSync(dir, { recursive: true, force: true });
}
