// Sessions with a narrow latent cache (bf16, int8, int4): their bytes, their logits beside the f32
// cache's on random checkpoints and on the built-in model, and the formats a model cannot keep.
import { describe, expect, it } from 'vitest';
import { loadModel, MlaError, type CacheFormat } from '../src/index.js';
import { BUILDS } from './helpers.js';
import { makeRandomCheckpoint, tinyLlamaConfig, tinyMlaConfig } from './reference/model.js';

const randomIds = (n: number, vocab: number, seed: number) =>
  Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729 + ((i * i) % 13)) % vocab);
const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, x) => Math.max(m, Math.abs(x)), 0);
const worst = (a: ArrayLike<number>, b: ArrayLike<number>) => { let w = 0; for (let i = 0; i < a.length; i++) w = Math.max(w, Math.abs(a[i] - b[i])); return w; };

/**
 * The largest logit difference from the f32 cache's, relative to the logits' largest magnitude,
 * that each format may reach. Measured on these two configs with seeds 5, 9 and 21 (random
 * weights, every logit of 25 positions, both paths): bf16 ≤ 0.33%, int8 ≤ 0.97%, int4 ≤ 16%
 * (random latents spread evenly over 15 levels: the int4 cache's worst case; the built-in model
 * loses 0.4% of its nats/byte). The bounds leave about 2× room. The kernels themselves are held
 * to f32 rounding against a float64 reference on the dequantised rows (test/kernels/latent.test.ts).
 */
const TOLERANCE: Record<Exclude<CacheFormat, 'f32'>, number> = { bf16: 0.007, int8: 0.02, int4: 0.3 };

/**
 * Prefill and steps against forward, relaxed build, int rows, absorbed: the value weights are
 * 7-bit codes (step max w / 127 per query and block), so a weight within the last bits of a
 * rounding boundary (batch and one-token projections differ in those) can round either way and
 * move a logit by about 1/127 of a block's share. Measured with seeds 5, 9, 21 on both configs:
 * ≤ 6e-7 of the range, once 3.3e-4 (one such flip); 1e-4 holds for the others.
 */
const STEP_7BIT = 1e-3;

describe.each(BUILDS)('narrow latent cache, %s build', (simd) => {
  const configs: [string, Record<string, unknown>][] = [
    ['query compression, d_c 24', tinyMlaConfig({})],
    ['no query compression, 6 heads, d_c 40 (not a multiple of 32)', tinyMlaConfig({ q_lora_rank: null, num_attention_heads: 6, num_key_value_heads: 6, kv_lora_rank: 40 })],
  ];
  it.each(configs)('MLA with %s: logits of every path within the stated tolerance of the f32 cache', async (_name, config) => {
    const source = { config, tensors: makeRandomCheckpoint(config, 21) };
    const model = await loadModel(source, { simd });
    const V = config.vocab_size as number, ids = randomIds(25, V, 3);
    const f32 = model.forward(ids);
    const range = maxAbs(f32);
    for (const cache of ['bf16', 'int8', 'int4'] as const) {
      const tol = TOLERANCE[cache] * range;
      for (const attention of ['naive', 'absorbed'] as const) {
        const full = model.forward(ids, { attention, cache });
        expect(worst(full, f32), `${cache} ${attention} forward`).toBeLessThan(tol);
        expect(worst(full, f32), `${cache} ${attention} forward: not the f32 cache's numbers`).toBeGreaterThan(0);
        // Prefill, then steps: the same logits as forward (the same rows, the same arithmetic per row).
        const s = model.createSession({ cache });
        expect(s.cacheFormat).toBe(cache);
        const first = s.prefill(ids.slice(0, 9), { attention });
        const same = (simd === 'relaxed' && cache !== 'bf16' && attention === 'absorbed' ? STEP_7BIT : 1e-4) * range;
        expect(worst(first, full.subarray(8 * V, 9 * V))).toBeLessThan(same);
        for (let t = 9; t < ids.length; t++) {
          expect(worst(s.step(ids[t], { attention }), full.subarray(t * V, (t + 1) * V)), `${cache} ${attention} step ${t}`).toBeLessThan(same);
        }
        s.dispose();
      }
    }
    model.dispose();
  });
});

describe('narrow latent cache on the built-in model', () => {
  it('kvCacheBytes and kvCacheBytesPerToken count the real rows of each format', async () => {
    const model = await loadModel();
    // d_c 48, d_r 16, 4 layers; rows padded to 16 bytes, int codes to 32 values.
    const perLayer = { f32: 4 * 64, bf16: 2 * 64, int8: 64 + 4 + 32 + 12, int4: 32 + 4 + 32 + 12 };
    for (const f of ['f32', 'bf16', 'int8', 'int4'] as const) {
      expect(model.cacheBytesPerToken(f)).toBe(4 * perLayer[f]);
      const before = model.memoryBytes;
      const s = model.createSession({ contextLength: 64, cache: f });
      expect(model.memoryBytes - before).toBeGreaterThanOrEqual(64 * 4 * perLayer[f]);
      expect(model.memoryBytes - before).toBeLessThan(64 * 4 * perLayer[f] + 64);
      s.prefill([256, 72, 105]);
      expect(s.kvCacheBytesPerToken).toBe(4 * perLayer[f]);
      expect(s.kvCacheBytes).toBe(3 * 4 * perLayer[f]);
      s.dispose();
    }
    expect(model.kvCacheBytesPerToken).toBe(model.cacheBytesPerToken('f32'));
    model.dispose();
  });

  it('greedy text with an int8 cache is the f32 cache\'s text; generate() and chat() take the option', async () => {
    const model = await loadModel();
    const text = async (cache: CacheFormat) => {
      let t = '';
      for await (const p of model.generate('Q: What is the meaning of life?\nA:', { maxNewTokens: 60, temperature: 0, cache })) t += p.text;
      return t;
    };
    expect(await text('int8')).toBe(await text('f32'));
    let answer = '';
    for await (const p of model.chat([{ role: 'user', content: 'Hello' }], { maxNewTokens: 5, cache: 'int4' })) answer += p.text;
    expect(typeof answer).toBe('string');
    model.dispose();
  });

  it('bad input: an unknown format, a format the given session does not keep, a narrow cache for GQA; nothing allocated', async () => {
    const model = await loadModel();
    const before = model.memoryBytes;
    const code = (f: () => unknown) => { try { f(); } catch (e) { return e instanceof MlaError ? `${e.code}: ${e.message}` : String(e); } return 'no error'; };
    expect(code(() => model.createSession({ cache: 'fp8' as CacheFormat }))).toMatch(/^BAD_INPUT: cache must be one of 'f32', 'bf16', 'int8', 'int4', got "fp8"/);
    expect(code(() => model.forward([256, 1], { cache: 'int3' as CacheFormat }))).toMatch(/^BAD_INPUT: cache must be one of/);
    expect(code(() => model.cacheBytesPerToken('q8' as CacheFormat))).toMatch(/^BAD_INPUT/);
    expect(code(() => model.generate('Hi', { cache: 'int9' as CacheFormat }))).toMatch(/^BAD_INPUT: cache must be one of/);
    const s = model.createSession({ cache: 'int8' });
    const during = model.memoryBytes;
    expect(code(() => model.generate('Hi', { session: s, cache: 'int4' }))).toBe("BAD_INPUT: option cache is 'int4', but the session given keeps a 'int8' cache");
    expect(code(() => s.kvCache.all())).toMatch(/^BAD_INPUT: a int8 cache has no f32 rows/);
    expect(model.memoryBytes).toBe(during);
    s.dispose();
    expect(model.memoryBytes).toBe(before);
    model.dispose();

    // MHA/GQA/MQA: K/V rows per head, which the narrow kernels do not read: BAD_INPUT, nothing allocated.
    for (const kvHeads of [4, 2, 1]) {
      const gqa = await loadModel({ config: tinyLlamaConfig({ num_key_value_heads: kvHeads }), tensors: makeRandomCheckpoint(tinyLlamaConfig({ num_key_value_heads: kvHeads }), 1) });
      const mem = gqa.memoryBytes;
      for (const f of ['bf16', 'int8', 'int4'] as const) {
        expect(code(() => gqa.createSession({ cache: f }))).toMatch(new RegExp(`^BAD_INPUT: cache '${f}' needs an MLA model`));
        expect(code(() => gqa.forward([1, 2], { cache: f }))).toMatch(/^BAD_INPUT/);
        expect(code(() => gqa.cacheBytesPerToken(f))).toMatch(/^BAD_INPUT/);
      }
      expect(gqa.memoryBytes).toBe(mem);
      gqa.createSession({ cache: 'f32' }).dispose();
      gqa.dispose();
    }
  });
});
