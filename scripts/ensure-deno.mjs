// Deno for the tests and the start-up bench, from the npm registry's `deno` package (which ships
// the binary). It cannot be a devDependency: this registry lacks the binaries for other platforms,
// so its lock file entry makes `npm ci` fail on a clean clone. So it is installed here, unsaved,
// when node_modules/.bin/deno is missing. `node scripts/ensure-deno.mjs` prints its path.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const DENO_VERSION = '2.9.6';
const root = fileURLToPath(new URL('..', import.meta.url));
export const DENO = fileURLToPath(new URL('../node_modules/.bin/deno', import.meta.url));

function works() {
  try {
    return execFileSync(DENO, ['--version'], { encoding: 'utf8' }).startsWith('deno ');
  } catch {
    return false;
  }
}

/** The path of a working deno binary, installing deno@DENO_VERSION (unsaved) when there is none. */
export function ensureDeno() {
  if (existsSync(DENO) && works()) return DENO;
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  execFileSync(npm, ['install', '--no-save', '--no-audit', '--no-fund', `deno@${DENO_VERSION}`],
    { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (!works()) throw new Error(`npm installed deno@${DENO_VERSION}, but ${DENO} does not run`);
  return DENO;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) console.log(ensureDeno());
