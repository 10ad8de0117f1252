// `mla-wasm convert` run as a user runs it (dist/cli.js, rebuilt when older than src/).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { BUILD_TIMEOUT_MS, buildDistIfStale } from './build-dist.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'dist', 'cli.js');
const gqa = join(root, 'models', 'fortune-gqa');
const run = (args: string[]) => {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

beforeAll(buildDistIfStale, BUILD_TIMEOUT_MS);

describe('mla-wasm convert', () => {
  it('converts fortune-gqa into a DeepSeek-V2 folder, prints the summary and the held-out losses', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mla-wasm-convert-'));
    const records: string[] = JSON.parse(readFileSync(join(gqa, 'val_records.json'), 'utf8'));
    writeFileSync(join(dir, 'eval.txt'), records.slice(100, 130).join('\n\n'));
    const out = join(dir, 'out');
    const r = run(['convert', '--model', gqa, '--kv-rank', '56', '--rope-dim', '40', '--eval', join(dir, 'eval.txt'), '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/DeepseekV2ForCausalLM, calibrated on 2,112 tokens the model sampled\)/); // max(2048, 4 × 192) in windows of 192
    expect(r.stdout).toMatch(/128 → 96 numbers per token per layer/);
    expect(r.stdout).toMatch(/layer 3 +20\/32 key pairs keep a rotation/);
    const [, before, after] = r.stdout.match(/held-out +([\d.]+) → ([\d.]+) nats\/byte/)!;
    expect(Number(after)).toBeGreaterThan(Number(before));
    expect(Number(after)).toBeLessThan(Number(before) * 1.1);
    expect(readdirSync(out).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).qk_latent_layernorm).toBe(false);
  });

  it('--gguf --latent-norm writes a deepseek2 GGUF that scores like the folder; without --latent-norm it refuses', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mla-wasm-convert-'));
    const records: string[] = JSON.parse(readFileSync(join(gqa, 'val_records.json'), 'utf8'));
    writeFileSync(join(dir, 'cal.txt'), records.slice(0, 6).join('\n\n'));
    writeFileSync(join(dir, 'eval.txt'), records.slice(100, 115).join('\n\n'));
    const common = ['convert', '--model', gqa, '--kv-rank', '48', '--rope-dim', '48', '--calibration', join(dir, 'cal.txt'), '--latent-norm', '--eval', join(dir, 'eval.txt')];
    const folder = run([...common, '--out', join(dir, 'out')]);
    const gguf = run([...common, '--gguf', '--out', join(dir, 'out.gguf')]);
    expect(gguf.stderr).toBe('');
    expect(gguf.code).toBe(0);
    expect(gguf.stdout).toMatch(/wrote .*out\.gguf \(deepseek2 GGUF, f32/);
    const score = (out: string) => out.match(/held-out +[\d.]+ → ([\d.]+) nats\/byte/)![1];
    expect(score(gguf.stdout)).toBe(score(folder.stdout));
    const refused = run(['convert', '--model', gqa, '--kv-rank', '48', '--rope-dim', '48', '--gguf', '--out', join(dir, 'x.gguf')]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^mla-wasm: --gguf needs --latent-norm/);
    expect(existsSync(join(dir, 'x.gguf'))).toBe(false);
  }, 240_000);

  it('--no-calibration is a plain weight SVD; --samples with a --calibration text is a usage error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mla-wasm-convert-'));
    const svd = run(['convert', '--model', gqa, '--kv-rank', '56', '--rope-dim', '40', '--no-calibration', '--out', join(dir, 'out')]);
    expect(svd.code).toBe(0);
    expect(svd.stdout).toMatch(/DeepseekV2ForCausalLM, plain weight SVD\)/);
    writeFileSync(join(dir, 'cal.txt'), 'text');
    const both = run(['convert', '--model', gqa, '--kv-rank', '56', '--rope-dim', '40', '--calibration', join(dir, 'cal.txt'), '--samples', '4096', '--out', join(dir, 'x')]);
    expect(both.code).toBe(1);
    expect(both.stderr).toMatch(/^mla-wasm: --samples and --seed are for the model's own samples/);
    expect(existsSync(join(dir, 'x'))).toBe(false);
  });

  it('a bad rank is one line on stderr, exit 1, and no folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mla-wasm-convert-'));
    const r = run(['convert', '--model', gqa, '--kv-rank', '56', '--rope-dim', '7', '--out', join(dir, 'out')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^mla-wasm: convertToMla: ropeDim must be an even integer/);
    expect(readdirSync(dir)).toEqual([]);
  });
});
