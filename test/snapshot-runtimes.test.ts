// A snapshot taken here (Node, the tests' own) restores under Node 24, Deno and Bun from a project that
// installed the packed package (test/runtimes/snapshot.mjs), and the next step's logits are Node's,
// bit for bit, for the same kernel build.
import { copyFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { loadModel } from '../src/index.js';
import { binary, lastJson, root, runOk, type Runtime } from './runtimes/helpers.js';

const NEXT = 84;
const SIMD = 'simd';
let expected: number[];
let position: number;

beforeAll(async () => {
  const dir = inject('consumerDir');
  copyFileSync(path.join(root, 'test/runtimes/snapshot.mjs'), path.join(dir, 'snapshot.mjs'));
  const model = await loadModel(undefined, { simd: SIMD, threads: 1 });
  const s = model.createSession({ contextLength: 80 });
  s.prefill(model.tokenizer!.encode('Q: What is the meaning of life?\nA:'));
  s.step(32);
  position = s.position;
  writeFileSync(path.join(dir, 'snapshot.bin'), s.snapshot());
  expected = Array.from(s.step(NEXT));
  model.dispose();
});

describe('a Node snapshot restores under every runtime with the same next logits', () => {
  it.each(['node24', 'deno', 'bun'] as Runtime[])('%s', async (runtime) => {
    const args = runtime === 'deno' ? ['run', '--allow-read', 'snapshot.mjs', SIMD, String(NEXT)] : ['snapshot.mjs', SIMD, String(NEXT)];
    const got = lastJson<{ position: number; logits: number[] }>(await runOk(binary(runtime), args, { cwd: inject('consumerDir') }));
    expect(got.position).toBe(position);
    expect(got.logits).toEqual(expected);
  });
});
