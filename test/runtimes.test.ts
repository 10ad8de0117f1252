// The conformance smoke test under Node (the tests' own, and 24), Deno and Bun: test/runtimes/conformance.mjs, run by each
// runtime from a project that installed the packed package, must give Node's greedy ids exactly
// and its first logits row to 1e-5, for the same kernel build (forced), and for each runtime's own
// choice ('auto') against Node's run of that build. Every run asks for 2 threads: where
// SharedArrayBuffer and workers exist (all three), the model must run on 2, so the ids and logits
// compared are the threaded ones.
import { copyFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { binary, lastJson, maxDiff, root, RUNTIMES, runOk, TOKENS, type Runtime } from './runtimes/helpers.js';

interface Conformance {
  runtime: string;
  detected: { simd: boolean; relaxed: boolean };
  simd: 'simd' | 'relaxed';
  threads: number;
  threadsAvailable: boolean;
  ids: number[];
  text: string;
  logits: number[];
}

type Mode = 'simd' | 'relaxed' | 'auto';
const MODES: Mode[] = ['simd', 'relaxed', 'auto'];
const results = new Map<string, Conformance>();
const key = (runtime: Runtime, mode: Mode) => `${runtime} ${mode}`;

function conformance(runtime: Runtime, mode: Mode, cwd: string): Promise<Conformance> {
  const args = [mode, String(TOKENS), '2'];
  const argv = runtime === 'node'
    // Node 20 compiles relaxed SIMD only behind a flag: given when relaxed is forced; 'auto' runs
    // Node as it comes.
    ? [...(mode === 'relaxed' ? ['--experimental-wasm-relaxed-simd'] : []), 'conformance.mjs', ...args]
    : runtime === 'deno' ? ['run', '--allow-read', 'conformance.mjs', ...args] : ['conformance.mjs', ...args];
  return runOk(binary(runtime), argv, { cwd }).then((out) => lastJson<Conformance>(out));
}

beforeAll(async () => {
  const cwd = inject('consumerDir');
  copyFileSync(path.join(root, 'test/runtimes/conformance.mjs'), path.join(cwd, 'conformance.mjs'));
  const runs = RUNTIMES.flatMap((r) => MODES.map((m) => [r, m] as const));
  const out = await Promise.all(runs.map(([r, m]) => conformance(r, m, cwd)));
  runs.forEach(([r, m], i) => results.set(key(r, m), out[i]));
}, 120_000);

describe('conformance: the same greedy output and logits under Node 20 and 24, Deno and Bun', () => {
  it.each(RUNTIMES)('%s runs the build it is asked for, and picks relaxed SIMD by itself when it can compile it', (runtime) => {
    for (const mode of ['simd', 'relaxed'] as const) expect(results.get(key(runtime, mode))!.simd).toBe(mode);
    const auto = results.get(key(runtime, 'auto'))!;
    expect(auto.detected.simd).toBe(true);
    expect(auto.simd).toBe(auto.detected.relaxed ? 'relaxed' : 'simd');
    // Deno and Bun compile relaxed SIMD with no flag; so does Node from 22 on.
    if (runtime !== 'node' || Number(process.versions.node.split('.')[0]) >= 22) expect(auto.simd).toBe('relaxed');
    if (runtime === 'node24') expect(auto.simd).toBe('relaxed');
  });

  it.each(RUNTIMES)('%s has SharedArrayBuffer and workers, and runs the model on 2 threads', (runtime) => {
    for (const mode of MODES) {
      const got = results.get(key(runtime, mode))!;
      expect(got.threadsAvailable, `${runtime} ${mode}`).toBe(true);
      expect(got.threads, `${runtime} ${mode}`).toBe(2);
    }
  });

  const cases = RUNTIMES.filter((r) => r !== 'node').flatMap((r) => MODES.map((m) => [r, m] as const));
  it.each(cases)('%s, %s build: ids exactly and logits to 1e-5 of Node\'s', (runtime, mode) => {
    const got = results.get(key(runtime, mode))!;
    // Node's run of the same build: forced, or for 'auto' whichever build the runtime chose.
    const ref = results.get(key('node', mode === 'auto' ? got.simd : mode))!;
    expect(ref.simd).toBe(got.simd);
    expect(got.ids).toHaveLength(TOKENS);
    expect(got.ids).toEqual(ref.ids);
    expect(got.text).toBe(ref.text);
    expect(got.logits).toHaveLength(ref.logits.length);
    expect(maxDiff(got.logits, ref.logits)).toBeLessThanOrEqual(1e-5);
  });

  it('the two builds agree with each other too (to float rounding, same greedy ids)', () => {
    const simd = results.get(key('node', 'simd'))!;
    const relaxed = results.get(key('node', 'relaxed'))!;
    expect(relaxed.ids).toEqual(simd.ids);
    expect(maxDiff(relaxed.logits, simd.logits)).toBeLessThanOrEqual(1e-4);
  });
});
