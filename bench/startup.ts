// Cold start per runtime: a fresh Node, Deno and Bun process each (bench/startup-child.mjs) imports
// the package, reads and compiles the kernels, instantiates them, loads the default model and runs
// the first token; the parent also times the whole process, runtime start-up included. One warm-up
// process per runtime first (so that every run finds the files in the OS cache), then `runs`
// processes; the median of each step is reported. Also the size of each kernel build.
//   benchStartup({ runtimes?, runs?, log? }) → { rows, wasm, table }     (table: Markdown)
// Run alone with `npm run bench:startup`.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
// @ts-expect-error: a plain .mjs script without declarations
import { ensureRuntime } from '../scripts/ensure-runtime.mjs';

export type StartupRuntime = 'node' | 'deno' | 'bun';

export interface StartupRow {
  runtime: StartupRuntime;
  version: string;
  /** The kernel build the runtime picks by itself ('auto'). */
  build: 'simd' | 'relaxed';
  /** Processes measured (after one warm-up). */
  runs: number;
  /** Medians, in ms: `import('mla-wasm')`; reading the .wasm; WebAssembly.compile; instantiate;
   *  loadModel() of the default model with the module handed in; the first token (prefill of one). */
  importMs: number;
  readMs: number;
  compileMs: number;
  instantiateMs: number;
  loadMs: number;
  firstTokenMs: number;
  /** From the script's first line to the first token. */
  totalMs: number;
  /** The whole process, spawn to exit, as the parent sees it (runtime start-up included). */
  processMs: number;
}

export interface WasmSize { file: string; bytes: number; gzipBytes: number }

export interface StartupResult { rows: StartupRow[]; wasm: WasmSize[]; table: string }

export interface StartupOptions {
  runtimes?: StartupRuntime[];
  /** Measured processes per runtime (default 5). */
  runs?: number;
  log?: (line: string) => void;
}

// bench/ when run from source, build/ when bundled: both one level below the package's root.
const root = fileURLToPath(new URL('..', import.meta.url));
const CHILD = path.join(root, 'bench/startup-child.mjs');

function spawnTimed(file: string, args: string[]): Promise<{ out: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd: root, encoding: 'utf8', timeout: 60_000 }, (error, stdout, stderr) => {
      const ms = performance.now() - t0;
      if (error) reject(new Error(`${path.basename(file)} ${args.join(' ')}: ${error.message}\n${stderr}`));
      else resolve({ out: stdout, ms });
    });
  });
}

function command(runtime: StartupRuntime): [string, string[]] | undefined {
  if (runtime === 'node') return [process.execPath, [CHILD]];
  if (runtime === 'deno') return [ensureRuntime('deno') as string, ['run', '--allow-read', CHILD]];
  const bun = path.join(root, 'node_modules/.bin/bun');
  return existsSync(bun) ? [bun, [CHILD]] : undefined;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** The kernel builds in build/, with their gzip -9 sizes. */
export function wasmSizes(): WasmSize[] {
  return readdirSync(path.join(root, 'build')).filter((f) => f.endsWith('.wasm')).sort().map((f) => {
    const bytes = readFileSync(path.join(root, 'build', f));
    return { file: `build/${f}`, bytes: bytes.length, gzipBytes: gzipSync(bytes, { level: 9 }).length };
  });
}

export async function benchStartup(options: StartupOptions = {}): Promise<StartupResult> {
  const { runtimes = ['node', 'deno', 'bun'], runs = 5, log = () => {} } = options;
  const rows: StartupRow[] = [];
  for (const runtime of runtimes) {
    const cmd = command(runtime);
    if (!cmd) { log(`start-up: no ${runtime}, skipped`); continue; }
    await spawnTimed(...cmd); // warm-up
    const samples: { json: Record<string, number | string>; ms: number }[] = [];
    for (let i = 0; i < runs; i++) {
      const { out, ms } = await spawnTimed(...cmd);
      samples.push({ json: JSON.parse(out.trim().split('\n').pop()!), ms });
    }
    const m = (k: string) => median(samples.map((s) => s.json[k] as number));
    const first = samples[0].json;
    const row: StartupRow = {
      runtime, version: String(first.version), build: first.build as StartupRow['build'], runs,
      importMs: m('importMs'), readMs: m('readMs'), compileMs: m('compileMs'), instantiateMs: m('instantiateMs'),
      loadMs: m('loadMs'), firstTokenMs: m('firstTokenMs'), totalMs: m('totalMs'), processMs: median(samples.map((s) => s.ms)),
    };
    log(`start-up, ${runtime} ${row.version}: ${row.totalMs.toFixed(1)} ms to the first token, ${row.processMs.toFixed(0)} ms for the process`);
    rows.push(row);
  }
  const wasm = wasmSizes();
  return { rows, wasm, table: startupTable(rows, wasm) };
}

/** Markdown: one row per runtime, then the kernel sizes. */
export function startupTable(rows: StartupRow[], wasm: WasmSize[] = wasmSizes()): string {
  const f = (x: number) => x.toFixed(1);
  const md = [
    'Cold start of the default model (fortune-mla, 6.1 MiB of f32 weights), median of ' +
      `${rows[0]?.runs ?? 0} fresh processes per runtime, ms:`,
    '',
    '| runtime | build | import | read .wasm | compile | instantiate | load model | first token | total | whole process |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.runtime} ${r.version} | ${r.build} | ${f(r.importMs)} | ${f(r.readMs)} | ${f(r.compileMs)} | ` +
      `${f(r.instantiateMs)} | ${f(r.loadMs)} | ${f(r.firstTokenMs)} | **${f(r.totalMs)}** | ${Math.round(r.processMs)} |`),
    '',
    '| kernels | bytes | gzip -9 |',
    '|---|---|---|',
    ...wasm.map((w) => `| \`${w.file}\` | ${w.bytes.toLocaleString('en-US')} | ${w.gzipBytes.toLocaleString('en-US')} |`),
  ];
  return md.join('\n');
}
