// The CLI tests run dist/cli.js: rebuild it (scripts/build.mjs) when a file under src/ is newer.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** A build takes tens of seconds on a busy 2-core machine: the hooks that call this wait this long. */
export const BUILD_TIMEOUT_MS = 180_000;

export function buildDistIfStale(): void {
  const cli = join(root, 'dist', 'cli.js');
  const src = join(root, 'src');
  const newest = Math.max(...readdirSync(src, { recursive: true }).map((f) => statSync(join(src, String(f))).mtimeMs));
  if (!existsSync(cli) || statSync(cli).mtimeMs < newest) {
    execFileSync(process.execPath, [join(root, 'scripts', 'build.mjs')], { cwd: root, stdio: 'inherit' });
  }
}
