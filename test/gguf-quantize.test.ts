// quantize() and quantizeToFile(), and `mla-wasm quantize` as a user runs it: the file is complete
// under its name only at the end (a temporary name first, removed on failure), the API's bytes and
// the CLI's file are the same, and every mistake is one line naming it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILD_TIMEOUT_MS, buildDistIfStale } from './build-dist.js';
import { MlaError, loadModel } from '../src/index.js';
import { quantize, quantizeToFile } from '../src/formats/gguf-quantize.js';
import { parseGguf } from '../src/formats/gguf.js';
import { memoryFile } from '../src/formats/source.js';
import { makeRandomCheckpoint, tinyMlaConfig } from './reference/model.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'dist', 'cli.js');
const fortune = join(root, 'models', 'fortune-mla');
const dir = mkdtempSync(join(tmpdir(), 'mla-quantize-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const run = (args: string[]) => {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

beforeAll(buildDistIfStale, BUILD_TIMEOUT_MS);

describe('mla-wasm quantize', () => {
  it('writes the GGUF quantize() makes, under its name only once complete, and it generates', async () => {
    const out = join(dir, 'fortune.q4_0.gguf');
    const seen: number[] = [];
    const bytes = await quantize(fortune, { type: 'q4_0', onProgress: (done) => seen.push(done) });
    expect(seen[0]).toBe(0);
    expect(seen[seen.length - 1]).toBe(bytes.length);
    const r = run(['quantize', '--model', fortune, '--type', 'q4_0', '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^wrote .*fortune\.q4_0\.gguf: 1\.1 MiB, Q4_0 matrices, in \d+\.\d s\n$/);
    expect(new Uint8Array(readFileSync(out))).toEqual(bytes);
    expect(readdirSync(dir)).toEqual(['fortune.q4_0.gguf']);
    const g = run(['generate', '--model', out, '--prompt', 'Q: Why?\\nA:', '--max-new-tokens', '8', '--temperature', '0']);
    expect(g.code).toBe(0);
    expect(g.stdout).toMatch(/^Q: Why\?\nA:/);
  });

  it('--keep keeps tensors F32; F16 and BF16 files load', async () => {
    const out = join(dir, 'keep.gguf');
    expect(run(['quantize', '--model', fortune, '--type', 'q8_0', '--keep', 'lm_head.weight', 'model.embed_tokens.weight', '--out', out]).code).toBe(0);
    const types = parseGguf(memoryFile('keep.gguf', new Uint8Array(readFileSync(out)))).tensors;
    expect([types.get('output.weight')!.type, types.get('token_embd.weight')!.type, types.get('blk.0.ffn_up.weight')!.type]).toEqual(['F32', 'F32', 'Q8_0']);
    (await loadModel(out)).dispose();
    for (const type of ['f16', 'bf16']) {
      const f = join(dir, `fortune.${type}.gguf`);
      expect(run(['quantize', '--model', fortune, '--type', type, '--out', f]).code).toBe(0);
      (await loadModel(f)).dispose();
    }
  });

  it('mistakes are one line each, and no partial file is left', async () => {
    const bad = (args: string[], message: RegExp) => {
      const r = run(['quantize', ...args]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    };
    bad(['--model', fortune, '--type', 'q5_k', '--out', join(dir, 'x.gguf')], /argument 'q5_k' is invalid.*f32, f16, bf16, q8_0, q4_0/);
    bad(['--model', fortune], /required option '--out <file.gguf>' not specified/);
    bad(['--model', fortune, '--out', join(dir, 'x.bin')], /should end in .gguf/);
    bad(['--model', fortune, '--keep', 'nope.weight', '--out', join(dir, 'x.gguf')], /keep names tensors the model does not have: nope.weight/);
    bad(['--model', join(dir, 'missing'), '--out', join(dir, 'x.gguf')], /does not exist/);
    bad(['--model', fortune, '--out', join(dir, 'no', 'such', 'dir', 'x.gguf')], /cannot write .*x\.gguf/);
    expect(existsSync(join(dir, 'x.gguf'))).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes('partial'))).toEqual([]);
    await expect(quantize(fortune, { type: 'Q4_K' })).rejects.toThrow(MlaError);
    await expect(quantize(fortune, { bogus: 1 } as never)).rejects.toThrow(/unknown option "bogus" in quantize\(\) options/);
    await expect(quantizeToFile(fortune, join(dir, 'x.gguf'), { bogus: 1 } as never)).rejects.toThrow(/unknown option "bogus" in quantizeToFile\(\) options/);
    await expect(quantizeToFile(fortune, '')).rejects.toThrow(/output path/);
  });

  it('an abort stops the writing: ABORTED, and neither the file nor a partial one is left', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mla-abort-'));
    const stop = new AbortController();
    let calls = 0;
    const e = await quantizeToFile(fortune, join(dir, 'x.gguf'), { type: 'Q8_0', signal: stop.signal, onProgress: () => { if (++calls === 2) stop.abort(); } })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(MlaError);
    expect((e as MlaError).code).toBe('ABORTED');
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(readdirSync(dir)).toEqual([]);
    await expect(quantize(fortune, { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORTED' });
  });

  it('generation_config.json\'s sampling defaults go in as llama.cpp\'s general.sampling.* keys and come back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mla-sampling-'));
    const file = join(dir, 'f.gguf');
    await quantizeToFile(fortune, file, { type: 'Q8_0' });
    const meta = parseGguf(memoryFile(file, new Uint8Array(readFileSync(file)))).metadata;
    const folder = await loadModel(fortune), gguf = await loadModel(file);
    try {
      const want = folder.generationConfig!;
      expect(want.doSample).toBe(true);
      expect(meta.get('general.sampling.temp')).toBe(Math.fround(want.temperature!));
      expect(meta.get('general.sampling.top_k')).toBe(want.topK);
      expect(meta.get('general.sampling.top_p')).toBe(Math.fround(want.topP!));
      expect(gguf.generationConfig).toMatchObject({ doSample: true, temperature: want.temperature, topK: want.topK, topP: want.topP });
    } finally {
      folder.dispose();
      gguf.dispose();
    }
  });

  it('a value past f16 (F16 weights, Q8_0 block scales) is NON_FINITE naming the tensor, and no file is left', async () => {
    const config = tinyMlaConfig({});
    const tensors = makeRandomCheckpoint(config, 3);
    const name = 'model.layers.0.mlp.up_proj.weight';
    const out = join(dir, 'big.gguf');
    const expectRefused = async (type: 'f16' | 'q8_0', v: number) => {
      tensors[name].data[40] = v;
      const e = await quantizeToFile({ config, tensors }, out, { type }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(MlaError);
      expect((e as MlaError).code).toBe('NON_FINITE');
      expect((e as MlaError).message).toContain(`blk.0.ffn_up.weight holds ${v} at element 40`);
      expect((e as MlaError).message).toContain(name);
      expect(readdirSync(dir).filter((f) => f.startsWith('big.gguf'))).toEqual([]);
    };
    await expectRefused('f16', 70000);
    await expectRefused('q8_0', 1e7);
    await quantizeToFile({ config, tensors }, out, { type: 'q8_0', keep: [name] });
    expect(existsSync(out)).toBe(true);
  });
});
