// Model.stepBatch: one decode step for several sessions gives each the logits stepping it alone
// would, to float rounding; 1 and 2 threads agree bit for bit; bad batches are typed errors that
// move no session.
import { describe, expect, it } from 'vitest';
import { loadModel, MlaError, type CacheFormat, type Session } from '../src/index.js';
import { BUILDS } from './helpers.js';
import { makeRandomCheckpoint, tinyLlamaConfig, tinyMlaConfig } from './reference/model.js';

const randomIds = (n: number, vocab: number, seed: number) =>
  Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729 + ((i * i) % 13)) % vocab);
const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, x) => Math.max(m, Math.abs(x)), 0);
const worst = (a: ArrayLike<number>, b: ArrayLike<number>) => { let w = 0; for (let i = 0; i < a.length; i++) w = Math.max(w, Math.abs(a[i] - b[i])); return w; };

/**
 * Batched and lone logits may differ only by float rounding: the linear layers run over B rows
 * instead of one (another matmul path, another summation order). Bound: 1e-5 of the logits'
 * largest magnitude.
 */
const TOLERANCE = 1e-5;

// Prompts of very different lengths (1 to 150 tokens: past one prefill chunk), each in its own cache format.
const LENGTHS = [1, 150, 7, 40, 3];
const FORMATS: CacheFormat[] = ['f32', 'bf16', 'int8', 'int4', 'f32'];

describe.each(BUILDS)('stepBatch, %s build', (simd) => {
  const configs: [string, Record<string, unknown>, CacheFormat[]][] = [
    ['MLA', tinyMlaConfig({ max_position_embeddings: 256 }), FORMATS],
    ['MLA, no query compression, d_c 40', tinyMlaConfig({ q_lora_rank: null, kv_lora_rank: 40, max_position_embeddings: 256 }), FORMATS],
    ['GQA', tinyLlamaConfig({ max_position_embeddings: 256 }), FORMATS.map(() => 'f32' as const)],
  ];
  it.each(configs)('%s: each session gets its lone step\'s logits; one ends mid-batch; 1 and 2 threads agree', async (_n, config, formats) => {
    const source = { config, tensors: makeRandomCheckpoint(config, 11) };
    const V = config.vocab_size as number;
    const results: Float32Array[][] = [];
    for (const threads of [1, 2]) {
      const model = await loadModel(source, { simd, threads });
      const open = (n: number) => LENGTHS.map((len, i) => {
        const s = model.createSession({ contextLength: 200, cache: formats[i] });
        s.prefill(randomIds(len, V, i + 1));
        return s;
      });
      const batch = open(0), alone = open(0);
      const got: Float32Array[] = [];
      for (let step = 0; step < 6; step++) {
        // Session 1 ends after 2 steps: it drops out of the batch.
        const live = batch.map((s, i) => ({ s, i })).filter(({ i }) => i !== 1 || step < 2);
        const ids = live.map(({ i }) => (step * 31 + i * 17) % V);
        const out = model.stepBatch(live.map(({ s }, k) => ({ session: s, id: ids[k] })));
        expect(out.length).toBe(live.length);
        live.forEach(({ i }, k) => {
          const ref = alone[i].step(ids[k]);
          expect(worst(out[k], ref), `session ${i} step ${step}`).toBeLessThanOrEqual(TOLERANCE * maxAbs(ref));
          expect(batch[i].position).toBe(alone[i].position);
          got.push(out[k]);
        });
      }
      results.push(got);
      model.dispose();
    }
    results[1].forEach((x, i) => expect(Array.from(x), `row ${i}: 2 threads`).toEqual(Array.from(results[0][i])));
  });
});

describe.each(BUILDS)('stepBatch of two sessions with bf16 weights, %s build', (simd) => {
  // Two rows take gemv-rows' 2-row tile (bf16 and f32 alike); weights rounded to bf16 at load.
  it('each session gets its lone step\'s logits; 1 and 2 threads agree', async () => {
    const config = tinyMlaConfig({ max_position_embeddings: 256 });
    const source = { config, tensors: makeRandomCheckpoint(config, 12) };
    const V = config.vocab_size as number;
    const results: Float32Array[][] = [];
    for (const threads of [1, 2]) {
      const model = await loadModel(source, { simd, threads, weights: 'bf16' });
      const open = () => [1, 40].map((len, i) => {
        const s = model.createSession({ contextLength: 64 });
        s.prefill(randomIds(len, V, i + 3));
        return s;
      });
      const batch = open(), alone = open(), got: Float32Array[] = [];
      for (let step = 0; step < 4; step++) {
        const ids = [step * 13 % V, (step * 29 + 5) % V];
        const out = model.stepBatch(batch.map((session, i) => ({ session, id: ids[i] })));
        out.forEach((x, i) => {
          const ref = alone[i].step(ids[i]);
          expect(worst(x, ref), `session ${i} step ${step}`).toBeLessThanOrEqual(TOLERANCE * maxAbs(ref));
          got.push(x);
        });
      }
      results.push(got);
      model.dispose();
    }
    results[1].forEach((x, i) => expect(Array.from(x), `row ${i}: 2 threads`).toEqual(Array.from(results[0][i])));
  });
});

describe('stepBatch on the built-in model', () => {
  it('greedy text of three sessions stepped together is each one\'s text alone', async () => {
    const model = await loadModel();
    const prompts = ['Q: Why is the sky blue?\nA:', 'Hello', 'Q: What is the meaning of life?\nA:'];
    const argmax = (x: Float32Array) => x.indexOf(Math.max(...x));
    const alone = prompts.map((p) => {
      const s = model.createSession({ contextLength: 128 });
      let id = argmax(s.prefill(model.tokenizer!.encode(p)));
      const ids = [id];
      for (let t = 0; t < 30; t++) ids.push(id = argmax(s.step(id)));
      s.dispose();
      return ids;
    });
    const sessions = prompts.map((p) => model.createSession({ contextLength: 128 }));
    let next = sessions.map((s, i) => argmax(s.prefill(model.tokenizer!.encode(prompts[i]))));
    const together = next.map((id) => [id]);
    for (let t = 0; t < 30; t++) {
      next = model.stepBatch(sessions.map((session, i) => ({ session, id: next[i] }))).map(argmax);
      next.forEach((id, i) => together[i].push(id));
    }
    expect(together).toEqual(alone);
    model.dispose();
  });

  it('bad batches are typed errors and no session moves', async () => {
    const model = await loadModel();
    const other = await loadModel();
    const a = model.createSession({ contextLength: 8 }), b = model.createSession({ contextLength: 8 });
    a.prefill([1, 2, 3]);
    b.prefill([1, 2, 3, 4, 5, 6, 7, 8]); // full
    const c = model.createSession({ contextLength: 8 });
    const expectCode = (f: () => unknown, code: string) => {
      const before = [a.position, c.position];
      let err: unknown;
      try { f(); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(MlaError);
      expect((err as MlaError).code, (err as Error).message).toBe(code);
      expect([a.position, c.position]).toEqual(before);
    };
    expectCode(() => model.stepBatch([]), 'BAD_INPUT');
    expectCode(() => model.stepBatch([{ session: a, id: 1 }, null as never]), 'BAD_INPUT');
    expectCode(() => model.stepBatch([{ session: a, id: 1 }, { session: other.createSession(), id: 1 }]), 'BAD_INPUT');
    expectCode(() => model.stepBatch([{ session: a, id: 1 }, { session: a, id: 2 }]), 'BAD_INPUT');
    expectCode(() => model.stepBatch([{ session: a, id: 1 }, { session: b, id: 2 }]), 'CACHE_FULL');
    expectCode(() => model.stepBatch([{ session: a, id: 1 }, { session: c, id: model.config.vocabSize }]), 'BAD_TOKEN');
    expectCode(() => model.stepBatch([{ session: a, id: 1 }, { session: c, id: 1.5 }]), 'BAD_TOKEN');
    const d = model.createSession();
    d.dispose();
    expectCode(() => model.stepBatch([{ session: a, id: 1 }, { session: d, id: 1 }]), 'DISPOSED');
    // A session a generate() stream holds is BUSY.
    const g = model.generate([1, 2], { session: c, maxNewTokens: 4 });
    await g.next();
    expectCode(() => model.stepBatch([{ session: a, id: 1 }, { session: c as Session, id: 1 }]), 'BUSY');
    await g.return();
    // And the sessions still step.
    expect(model.stepBatch([{ session: a, id: 1 }, { session: c, id: 1 }]).length).toBe(2);
    expect(a.position).toBe(4);
    other.dispose();
    model.dispose();
  });
});
