// Shared by the runtime tests: running a program under Node, Deno or Bun, the README's
// "Use it from …" snippets, the edge harness's input, and Node's own greedy output as the reference.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';
import { loadModel, type SimdBuild } from '../../src/index.js';

export const root = fileURLToPath(new URL('../..', import.meta.url));
export const BUN = path.join(root, 'node_modules/.bin/bun');
export const PROMPT = 'Q: What is the meaning of life?\nA:';
export const TOKENS = 32;

/** `node` is the Node running the tests (20 here); `node24` the current LTS line, beside it. */
export type Runtime = 'node' | 'node24' | 'deno' | 'bun';
export const RUNTIMES: Runtime[] = ['node', 'node24', 'deno', 'bun'];

export function binary(runtime: Runtime): string {
  switch (runtime) {
    case 'node': return process.execPath;
    case 'node24': return inject('node24');
    case 'deno': return inject('deno');
    case 'bun': return BUN;
  }
}

export interface Ran { code: number | null; stdout: string; stderr: string }

/** Run a program to its end (never rejects: the caller checks `code`). */
export function run(file: string, args: string[], options: { cwd?: string; input?: Uint8Array; env?: NodeJS.ProcessEnv; timeout?: number } = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const child = execFile(file, args, {
      cwd: options.cwd ?? root,
      env: options.env ?? process.env,
      encoding: 'utf8',
      maxBuffer: 64 << 20,
      timeout: options.timeout ?? 60_000,
    }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
    child.stdin?.end(options.input);
  });
}

/** Run and return stdout, failing with stderr shown when the program fails. */
export async function runOk(file: string, args: string[], options: Parameters<typeof run>[2] = {}): Promise<string> {
  const r = await run(file, args, options);
  if (r.code !== 0) throw new Error(`${path.basename(file)} ${args.join(' ')} exited with ${r.code}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** The last line of stdout, parsed as JSON. */
export function lastJson<T>(stdout: string): T {
  const lines = stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as T;
}

export interface GreedyRun { ids: number[]; text: string; logits: number[]; simd: SimdBuild }

/** Node's greedy decode of PROMPT in this process (the reference the other runtimes must match). */
export async function nodeGreedy(simd: SimdBuild, tokens = TOKENS): Promise<GreedyRun> {
  const model = await loadModel(undefined, { simd });
  const { bosTokenId, eosTokenIds } = model.config;
  const session = model.createSession();
  const argmax = (v: Float32Array) => v.reduce((best, x, i) => (x > v[best] ? i : best), 0);
  let logits = session.prefill([bosTokenId!, ...new TextEncoder().encode(PROMPT)]);
  const first = Array.from(logits);
  const ids: number[] = [];
  while (ids.length < tokens) {
    const id = argmax(logits);
    if (eosTokenIds.includes(id)) break;
    ids.push(id);
    logits = session.step(id);
  }
  model.dispose();
  const text = new TextDecoder().decode(new Uint8Array(ids.filter((id) => id < 256)));
  return { ids, text, logits: first, simd: model.simd };
}

/** The largest |a[i] - b[i]|, or Infinity when the lengths differ. */
export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** The edge harness's stdin: the kernels and the default model's files, framed (test/runtimes/edge.mjs). */
export function edgeInput(build: SimdBuild = 'simd'): Uint8Array {
  const files: [string, Uint8Array][] = [
    ['KERNELS', readFileSync(path.join(root, `build/kernels-${build}.wasm`))],
    ['CONFIG', readFileSync(path.join(root, 'models/fortune-mla/config.json'))],
    ['WEIGHTS', readFileSync(path.join(root, 'models/fortune-mla/model.safetensors'))],
  ];
  const header = new TextEncoder().encode(JSON.stringify({ files: files.map(([n, b]) => [n, b.length]) }));
  const out = new Uint8Array(4 + header.length + files.reduce((n, [, b]) => n + b.length, 0));
  new DataView(out.buffer).setUint32(0, header.length, true);
  out.set(header, 4);
  let at = 4 + header.length;
  for (const [, b] of files) { out.set(b, at); at += b.length; }
  return out;
}

export interface Snippet {
  /** The ### heading. */
  title: string;
  /** Files named by each code block's first line (`// main.mjs`, `<!-- index.html -->`). */
  files: Record<string, string>;
  /** The lines of the section's sh blocks, comments dropped. */
  commands: string[];
}

/** docs/runtimes.md's "## Use it from …" section, one entry per ### heading. */
export function readmeSnippets(): Snippet[] {
  const readme = readFileSync(path.join(root, 'docs', 'runtimes.md'), 'utf8');
  const start = readme.indexOf('\n## Use it from');
  if (start < 0) throw new Error('docs/runtimes.md has no "## Use it from" section');
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const snippets: Snippet[] = [];
  for (const part of section.split('\n### ').slice(1)) {
    const title = part.slice(0, part.indexOf('\n')).trim();
    const snippet: Snippet = { title, files: {}, commands: [] };
    for (const m of part.matchAll(/```(\w+)\n([\s\S]*?)```/g)) {
      const [, lang, body] = m;
      if (lang === 'sh') {
        snippet.commands.push(...body.split('\n').map((l) => l.replace(/(^|\s)#.*$/, '').trim()).filter(Boolean));
        continue;
      }
      const name = /^(?:\/\/|<!--)\s*([\w.-]+)/.exec(body)?.[1];
      if (!name) throw new Error(`docs/runtimes.md "${title}": a ${lang} block does not start with its file name`);
      snippet.files[name] = body;
    }
    snippets.push(snippet);
  }
  return snippets;
}

export function snippet(titleStart: string): Snippet {
  const s = readmeSnippets().find((x) => x.title.startsWith(titleStart));
  if (!s) throw new Error(`docs/runtimes.md has no "### ${titleStart}…" under "## Use it from"`);
  return s;
}
