// The README's "Use it from …" snippets for Node, Deno and Bun, taken from README.md as they are
// written, saved into a project that installed the packed package, and run with the README's own
// commands. (The browser snippet runs in test/browser.test.ts, the edge function in edge.test.ts.)
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import type { SimdBuild } from '../src/index.js';
import { nodeGreedy, root, run, snippet, type GreedyRun } from './runtimes/helpers.js';

const sections = ['Node', 'Deno', 'Bun'].map((title) => snippet(title));
const reference = new Map<SimdBuild, GreedyRun>();
let dir: string;

beforeAll(async () => {
  dir = inject('consumerDir');
  for (const s of sections) {
    for (const [name, text] of Object.entries(s.files)) writeFileSync(path.join(dir, name), text);
  }
  for (const build of ['simd', 'relaxed'] as const) reference.set(build, await nodeGreedy(build));
});

/** A README command run by the shell in the consumer project, with Deno and Bun on the PATH. */
function shell(command: string) {
  const bins = [path.dirname(inject('deno')), path.join(root, 'node_modules/.bin')];
  const env = { ...process.env, PATH: [...bins, process.env.PATH].join(path.delimiter) };
  return run('/bin/sh', ['-c', command], { cwd: dir, env });
}

describe.each(sections)('README: use it from $title', (section) => {
  it('has commands', () => expect(section.commands.length).toBeGreaterThan(0));

  it.each(section.commands)('%s', async (command) => {
    const r = await shell(command);
    expect(r.code, `${command}\n${r.stderr}`).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    const last = lines[lines.length - 1];
    if (command.startsWith('deno check')) {
      expect(r.stderr).toMatch(/Check/);
    } else if (command.endsWith('main.ts')) {
      // `${layers} layers, ${simd} SIMD, logits ${T}×${vocab}, KV cache … B/token (MHA would need …)`
      expect(last).toMatch(/^4 layers, (simd|relaxed) SIMD, logits 3×264, KV cache 1024 B\/token \(MHA would need 7680\)$/);
    } else {
      // The greedy text, then `${simd} SIMD build, ${bytes} bytes of KV cache`.
      const m = /^(simd|relaxed) SIMD build, (\d+) bytes of KV cache$/.exec(last);
      expect(m, r.stdout).not.toBeNull();
      const ref = reference.get(m![1] as SimdBuild)!;
      expect(r.stdout).toBe(`${ref.text}\n${last}\n`);
      expect(Number(m![2])).toBe(1024 * (1 + new TextEncoder().encode('Q: What is the meaning of life?\nA:').length + 32));
    }
    if (command === 'node main.mjs' && Number(process.versions.node.split('.')[0]) < 22) expect(last).toMatch(/^simd /);
    if (command.includes('--experimental-wasm-relaxed-simd') || /^(deno run|bun) /.test(command)) expect(last).toMatch(/relaxed/);
  });
});
