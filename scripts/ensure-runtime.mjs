// Deno and Node 24 for the cross-runtime tests and the start-up bench, from the npm registry's
// `deno` and `node` packages (each ships or fetches its binary from the registry). Neither can be a
// devDependency: `deno`'s lock entry lacks other platforms' binaries (a clean `npm ci` fails), and
// `node` would shadow the Node that runs npm's scripts. So each goes into a project of its own under
// node_modules/.runtimes/, installed when missing. `node scripts/ensure-runtime.mjs deno` prints a path.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Pinned versions: a runtime the tests compare against must not move under them. */
export const RUNTIME_VERSIONS = { deno: '2.9.6', node24: '24.21.0' };
const PACKAGES = { deno: 'deno', node24: 'node' };
const BINARIES = { deno: 'deno', node24: 'node' };

const root = fileURLToPath(new URL('..', import.meta.url));

/** Where the runtime's binary is once installed. */
export function runtimePath(name) {
  return path.join(root, 'node_modules/.runtimes', name, 'node_modules/.bin', BINARIES[name]);
}

function version(bin) {
  try {
    return execFileSync(bin, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

/** The path of a working binary of `name` ('deno' or 'node24'), installing it when missing. */
export function ensureRuntime(name) {
  const want = RUNTIME_VERSIONS[name];
  if (!want) throw new Error(`unknown runtime "${name}" (known: ${Object.keys(RUNTIME_VERSIONS).join(', ')})`);
  const bin = runtimePath(name);
  if (existsSync(bin) && version(bin).includes(want)) return bin;
  const dir = path.join(root, 'node_modules/.runtimes', name);
  mkdirSync(dir, { recursive: true });
  // npm ≥ 11 runs a dependency's install script only when allowScripts names it; `node` needs its
  // preinstall to fetch the platform's binary package from the registry.
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({
    name: `mla-wasm-runtime-${name}`, private: true,
    dependencies: { [PACKAGES[name]]: want },
    allowScripts: { [PACKAGES[name]]: true },
  }, null, 2));
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  execFileSync(npm, ['install', '--no-audit', '--no-fund', '--no-package-lock', '--loglevel=error'],
    { cwd: dir, stdio: ['ignore', 'inherit', 'inherit'] });
  if (!version(bin).includes(want)) throw new Error(`npm installed ${PACKAGES[name]}@${want}, but ${bin} does not run`);
  return bin;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) console.log(ensureRuntime(process.argv[2] ?? 'deno'));
