// Edge style: the README's edge function (worker.mjs) run as an edge platform runs it, with no file
// system, no fetch, no SharedArrayBuffer, no `process`, and no compiling WebAssembly at run time:
// the kernels come in precompiled and the model as bytes (test/runtimes/edge.mjs). Under Node every
// node: import is refused by loader hooks; under Deno there is no permission at all. The answer must
// be Node's own greedy output. And the harness has teeth: a handler that reads the package's files
// or compiles the kernels itself is stopped.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { binary, edgeInput, lastJson, nodeGreedy, root, run, snippet, type GreedyRun, type Runtime } from './runtimes/helpers.js';

interface EdgeResult { answers: string[]; globals: Record<string, unknown> }

let dir: string;
let reference: GreedyRun;
const input = edgeInput('simd');

/** Write an entry that runs `worker` (a file in the consumer project) in the harness. */
function entry(worker: string): string {
  const file = `edge-entry-${path.basename(worker, '.mjs')}.mjs`;
  writeFileSync(path.join(dir, file), [
    `import { runEdge } from ${JSON.stringify(pathToFileURL(path.join(root, 'test/runtimes/edge.mjs')).href)};`,
    `await runEdge(() => import('./${worker}'));`,
    '',
  ].join('\n'));
  return file;
}

function runEdge(runtime: Runtime, entryFile: string) {
  const args = runtime === 'node' || runtime === 'node24'
    ? ['--import', pathToFileURL(path.join(root, 'test/runtimes/no-node-builtins.mjs')).href, entryFile]
    : runtime === 'deno' ? ['run', '--no-prompt', entryFile] : [entryFile];
  return run(binary(runtime), args, { cwd: dir, input });
}

beforeAll(async () => {
  dir = inject('consumerDir');
  const worker = snippet('Edge').files['worker.mjs'];
  expect(worker, 'README.md: the Edge function section has a worker.mjs').toBeDefined();
  writeFileSync(path.join(dir, 'worker.mjs'), worker);
  // Reads the built-in model from the package's folder: needs the file system.
  writeFileSync(path.join(dir, 'worker-reads-files.mjs'),
    worker.replace(/loadModel\([\s\S]*?\n\s*\);/, 'loadModel();'));
  // Hands the kernels in as bytes: needs compiling at run time.
  writeFileSync(path.join(dir, 'worker-compiles.mjs'),
    worker.replace('{ wasmModule: env.KERNELS }', '{ wasmBytes: new Uint8Array(8) }'));
  reference = await nodeGreedy('simd');
});

describe('edge style: no file system, no fetch, no SharedArrayBuffer, precompiled kernels, weights as bytes', () => {
  it.each(['node', 'node24', 'deno', 'bun'] as const)('the README edge function under %s gives Node\'s greedy text', async (runtime) => {
    const r = await runEdge(runtime, entry('worker.mjs'));
    expect(r.stderr).not.toMatch(/edge: refused/);
    expect(r.code, r.stderr).toBe(0);
    const out = lastJson<EdgeResult>(r.stdout);
    expect(out.globals).toMatchObject({ SharedArrayBuffer: 'undefined', fetch: 'undefined', process: 'undefined' });
    expect(reference.text.length).toBeGreaterThan(10);
    expect(out.answers).toEqual([reference.text, reference.text]); // cold, then warm
  });

  it.each(['node', 'deno'] as const)('under %s, a handler that reads the package\'s files is stopped', async (runtime) => {
    const r = await runEdge(runtime, entry('worker-reads-files.mjs'));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(runtime === 'node' ? /edge: refused import of node:fs/ : /Requires read access|NotCapable/);
    expect(r.stderr).toMatch(/cannot read the folder/); // the package's own error, saying why
  });

  it('a handler that compiles the kernels at run time is stopped', async () => {
    const r = await runEdge('node', entry('worker-compiles.mjs'));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/edge: WebAssembly.compile is not allowed here/);
  });
});
