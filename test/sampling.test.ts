// Sampling: greedy is the argmax, and the seeded draws follow the distribution temperature, top-k,
// top-p and the repetition penalty define.
import { describe, expect, it } from 'vitest';
import { applyRepetitionPenalty, argmax, candidates, createRng, LogitAdjuster, sampleToken, tokenLogprobs, type SamplingOptions } from '../src/generate/sampling.js';
import { formatRate } from '../src/index.js';

const opts = (o: Partial<SamplingOptions>): SamplingOptions => ({ temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, ...o });
const logitsOf = (probs: number[]) => Float32Array.from(probs, Math.log);

/** Empirical frequencies of n draws. */
function frequencies(logits: Float32Array, o: SamplingOptions, n: number, seed = 1): number[] {
  const rng = createRng(seed);
  const counts = new Array(logits.length).fill(0);
  for (let i = 0; i < n; i++) counts[sampleToken(logits.slice(), o, rng)]++;
  return counts.map((c) => c / n);
}

/** |frequency − p| within 5 standard deviations for every token. */
function expectDistribution(freq: number[], p: number[], n: number): void {
  for (let i = 0; i < p.length; i++) {
    const sd = Math.sqrt(Math.max(p[i] * (1 - p[i]), 1e-12) / n);
    expect(Math.abs(freq[i] - p[i]), `token ${i}: ${freq[i]} vs ${p[i]}`).toBeLessThanOrEqual(5 * sd + 1e-9);
  }
}

describe('random numbers', () => {
  it('a seed reproduces its sequence; other seeds differ; values in [0, 1) and uniform', () => {
    const a = createRng(42), b = createRng(42), c = createRng(43);
    const xa = Array.from({ length: 1000 }, a), xb = Array.from({ length: 1000 }, b), xc = Array.from({ length: 1000 }, c);
    expect(xa).toEqual(xb);
    expect(xa).not.toEqual(xc);
    expect(Math.min(...xa)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xa)).toBeLessThan(1);
    const r = createRng(7), bins = new Array(10).fill(0), n = 100_000;
    for (let i = 0; i < n; i++) bins[Math.floor(r() * 10)]++;
    for (const b of bins) expect(Math.abs(b / n - 0.1)).toBeLessThan(0.005);
    // Seeds past 32 bits are not folded onto small ones.
    expect(createRng(2 ** 32 + 5)()).not.toBe(createRng(5)());
  });
});

describe('greedy', () => {
  const logits = Float32Array.from([0.1, 2.5, -1, 2.4, 0]);
  it('temperature 0 is the argmax, whatever the generator', () => {
    expect(argmax(logits)).toBe(1);
    for (const seed of [1, 2, 3]) expect(sampleToken(logits.slice(), opts({ temperature: 0 }), createRng(seed))).toBe(1);
  });
  it('top-k 1 is greedy at any temperature', () => {
    for (const seed of [1, 2, 3]) expect(sampleToken(logits.slice(), opts({ temperature: 5, topK: 1 }), createRng(seed))).toBe(1);
  });
  it('ties go to the lowest id', () => {
    expect(argmax(Float32Array.from([1, 3, 3]))).toBe(1);
  });
});

describe('distributions', () => {
  const p = [0.5, 0.25, 0.15, 0.07, 0.03];
  const logits = logitsOf(p);
  const n = 40_000;

  it('temperature 1 samples the softmax', () => {
    expectDistribution(frequencies(logits, opts({}), n), p, n);
  });

  it('temperature T samples softmax(logits / T)', () => {
    for (const T of [0.5, 2]) {
      const w = p.map((x) => x ** (1 / T)), s = w.reduce((a, b) => a + b);
      expectDistribution(frequencies(logits, opts({ temperature: T }), n, 3), w.map((x) => x / s), n);
    }
  });

  it('top-k keeps the k most likely, renormalised', () => {
    expectDistribution(frequencies(logits, opts({ topK: 2 }), n), [2 / 3, 1 / 3, 0, 0, 0], n);
  });

  it('top-p keeps the smallest set reaching p (always at least one)', () => {
    // 0.5 + 0.25 = 0.75 < 0.8, so the third (0.15) is needed too.
    expectDistribution(frequencies(logits, opts({ topP: 0.8 }), n), [0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0, 0], n);
    expect(candidates(logits, opts({ topP: 0.75 })).ids).toEqual([0, 1]);
    expect(candidates(logits, opts({ topP: 0.01 })).ids).toEqual([0]);
  });

  it('top-k then top-p', () => {
    // top-k 3 → 0.5/0.9, 0.25/0.9, 0.15/0.9; top-p 0.7 of that: 0.556 + 0.278 ≥ 0.7 → two tokens.
    expect(candidates(logits, opts({ topK: 3, topP: 0.7 })).ids).toEqual([0, 1]);
  });

  it('min-p keeps the tokens at least p times as likely as the best, renormalised', () => {
    // 0.25 and 0.15 are at least 0.25 × 0.5 = 0.125; 0.07 and 0.03 are not.
    expectDistribution(frequencies(logits, opts({ minP: 0.25 }), n), [0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0, 0], n);
    expect(candidates(logits, opts({ minP: 0.51 })).ids).toEqual([0]);
    expect(candidates(logits, opts({ minP: 1 })).ids).toEqual([0]);
    expect(candidates(logits, opts({ minP: 0 })).ids).toEqual([0, 1, 2, 3, 4]);
    // Relative to the best after temperature: at T = 2 the ratios are square roots (0.07/0.5 → 0.374).
    expect(candidates(logits, opts({ minP: 0.3, temperature: 2 })).ids).toEqual([0, 1, 2, 3]);
  });

  it('min-p after top-k and top-p', () => {
    expect(candidates(logits, opts({ topK: 4, minP: 0.1 })).ids).toEqual([0, 1, 2, 3]);
    expect(candidates(logits, opts({ topP: 0.7, minP: 0.1 })).ids).toEqual([0, 1]);
  });

  it('keeping every token draws exactly what the candidate list draws, without building it', () => {
    const v = Float32Array.from({ length: 5000 }, (_, i) => 4 * Math.sin(i * 12.9898));
    for (const temperature of [1, 0.7]) {
      const fast = createRng(5), slow = createRng(5);
      for (let n = 0; n < 300; n++) {
        const { ids, probs } = candidates(v, opts({ temperature }));
        const u = slow();
        let acc = 0, want = ids[ids.length - 1];
        for (let i = 0; i < ids.length; i++) { acc += probs[i]; if (u < acc) { want = ids[i]; break; } }
        expect(sampleToken(v.slice(), opts({ temperature }), fast)).toBe(want);
      }
    }
  });

  it('a seed reproduces the draws', () => {
    const draw = (seed: number) => { const r = createRng(seed); return Array.from({ length: 200 }, () => sampleToken(logits.slice(), opts({}), r)); };
    expect(draw(9)).toEqual(draw(9));
    expect(draw(9)).not.toEqual(draw(10));
  });

  it('top-k on a large vocabulary picks the right ids in order', () => {
    const v = Float32Array.from({ length: 5000 }, (_, i) => Math.sin(i * 12.9898) * 43758.5453 % 1);
    const sorted = Array.from(v.keys()).sort((a, b) => v[b] - v[a]);
    expect(candidates(v, opts({ topK: 7 })).ids).toEqual(sorted.slice(0, 7));
    expect(candidates(v, opts({ topP: 0.5 })).ids).toEqual(sorted.slice(0, candidates(v, opts({ topP: 0.5 })).ids.length));
  });
});

describe('log-probabilities', () => {
  /** log-softmax the long way, in float64: log(exp(x_i) / Σ exp(x_j)), shifted only to stay finite. */
  function reference(l: ArrayLike<number>): number[] {
    const x = Array.from(l, Number), m = Math.max(...x);
    const e = x.map((v) => Math.exp(v - m)), s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => Math.log(v / s));
  }

  it('equal a float64 log-softmax; the top alternatives are the most likely ids in order', () => {
    for (const V of [1, 2, 7, 33, 1000]) {
      const l = Float32Array.from({ length: V }, (_, i) => Math.sin(i * 7.31 + V) * 9);
      const ref = reference(l);
      const order = Array.from(ref.keys()).sort((a, b) => ref[b] - ref[a] || a - b);
      for (const id of [0, V - 1, Math.floor(V / 2)]) {
        for (const top of [0, 1, 5, 20]) {
          const got = tokenLogprobs(l, id, top);
          expect(Math.abs(got.logprob - ref[id])).toBeLessThan(1e-12);
          expect(got.top.map((t) => t.id)).toEqual(order.slice(0, Math.min(top, V)));
          for (const t of got.top) expect(Math.abs(t.logprob - ref[t.id])).toBeLessThan(1e-12);
        }
      }
    }
  });

  it('stay finite and right for far-apart logits, and ties keep the lower id first', () => {
    const l = Float32Array.from([1000, -1000, 0, 0]);
    const got = tokenLogprobs(l, 1, 4);
    expect(got.logprob).toBeCloseTo(-2000, 9);
    expect(got.top.map((t) => t.id)).toEqual([0, 2, 3, 1]);
    expect(got.top[0].logprob).toBeCloseTo(0, 12);
    expect(tokenLogprobs(Float32Array.from([2, 2, 2]), 1, 3).top.map((t) => t.id)).toEqual([0, 1, 2]);
    expect(tokenLogprobs(Float32Array.from([2, 2, 2]), 1, 0).logprob).toBeCloseTo(-Math.log(3), 14);
  });
});

describe('repetition penalty', () => {
  it('divides positive logits and multiplies negative ones, once per distinct id', () => {
    const l = Float32Array.from([2, -2, 1, 4]);
    applyRepetitionPenalty(l, [0, 1, 0, 0], 2);
    expect(Array.from(l)).toEqual([1, -4, 1, 4]);
  });

  it('can change the greedy choice', () => {
    const l = Float32Array.from([3, 2.5, 0]);
    expect(sampleToken(l.slice(), opts({ temperature: 0, repetitionPenalty: 1.5 }), createRng(1), [0])).toBe(1);
    expect(sampleToken(l.slice(), opts({ temperature: 0 }), createRng(1), [0])).toBe(0);
  });
});

describe('formatRate', () => {
  it('a speed with its unit; a dash, never Infinity or NaN, when the time is zero or not a time', () => {
    expect(formatRate(35, 1000)).toBe('35 tok/s');
    expect(formatRate(2, 800)).toBe('2.5 tok/s');
    expect(formatRate(1234, 100, 'tokens/s')).toBe('12340 tokens/s');
    expect(formatRate(0, 50)).toBe('0.0 tok/s');
    for (const [n, ms] of [[35, 0], [0, 0], [5, -1], [5, NaN], [5, Infinity], [NaN, 10], [Infinity, 10]]) {
      expect(formatRate(n, ms, 'tokens/s'), `${n} in ${ms} ms`).toBe('– tokens/s');
    }
  });
});

describe('LogitAdjuster', () => {
  it('repetition penalty over prompt and output, presence and frequency over the output only, then the bias', () => {
    const a = new LogitAdjuster({ repetitionPenalty: 2, presencePenalty: 0.5, frequencyPenalty: 0.25, logitBias: new Map([[3, 1], [9, 5]]) }, [0, 1]);
    const base = [4, -4, 4, 4, 0];
    let x = Float32Array.from(base);
    a.apply(x);
    expect(Array.from(x)).toEqual([2, -8, 4, 5, 0]); // id 9 is past the vocabulary: ignored
    a.accept(2);
    a.accept(2);
    a.accept(1);
    x = Float32Array.from(base);
    a.apply(x);
    // 2: halved (now seen), then -0.5 - 2 * 0.25; 1: doubled, then -0.5 - 0.25; 0: prompt only, no presence.
    expect(Array.from(x)).toEqual([2, -8.75, 1, 5, 0]);
  });
  it('with nothing to do it leaves the logits alone', () => {
    const a = new LogitAdjuster({ repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0 }, [0]);
    expect(a.active).toBe(false);
    a.accept(1);
    const x = Float32Array.from([1, 2]);
    a.apply(x);
    expect(Array.from(x)).toEqual([1, 2]);
  });
});
