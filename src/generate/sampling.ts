// Choosing the next token from logits: the penalties and logit bias, then temperature, top-k, top-p
// and min-p (the order of transformers' logits processors), then a draw from a seeded generator.
// Temperature 0 is greedy: the argmax, no randomness. Also the model's log-probabilities of a
// token and of its most likely alternatives, for the stream to report.

export interface SamplingOptions {
  /** 0: greedy. Otherwise logits are divided by it before the softmax. */
  temperature: number;
  /** Keep the k most likely tokens; 0 keeps all. */
  topK: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all. */
  topP: number;
  /** Keep the tokens at least minP times as likely as the most likely one; 0 (the default) keeps all. */
  minP?: number;
  /** > 1 makes tokens already in the context less likely (transformers' rule: divide a positive logit, multiply a negative one). */
  repetitionPenalty: number;
}

export type Rng = () => number;

/**
 * A seeded generator of uniform numbers in [0, 1): SplitMix32 to spread the seed, then sfc32.
 * The same seed gives the same sequence on every JavaScript engine.
 */
export function createRng(seed: number): Rng {
  let s = (Math.trunc(seed) | 0) >>> 0;
  const hi = Math.trunc(seed / 2 ** 32) | 0; // seeds past 32 bits still matter
  const split = () => {
    s = (s + 0x9e3779b9) | 0;
    let z = s ^ hi;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split(), b = split(), c = split(), d = split();
  const next = () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 12; i++) next();
  return next;
}

/** Index of the largest value (the first, on ties); with a mask, among the entries it marks 1. */
export function argmax(v: ArrayLike<number>, mask?: Uint8Array): number {
  if (!mask) {
    let best = 0;
    for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
    return best;
  }
  let best = -1;
  for (let i = 0; i < v.length; i++) if (mask[i] && (best < 0 || v[i] > v[best])) best = i;
  return best;
}

/** In place: every distinct id of `context` gets its logit divided (if > 0) or multiplied (if < 0) by `penalty`. */
export function applyRepetitionPenalty(logits: Float32Array, context: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  for (const id of new Set(context)) {
    if (id < 0 || id >= logits.length) continue;
    const x = logits[id];
    logits[id] = x > 0 ? x / penalty : x * penalty;
  }
}

export interface LogitAdjustOptions {
  /** transformers' rule over the prompt and the output: divide a positive logit, multiply a negative one; 1 = none. */
  repetitionPenalty: number;
  /** OpenAI's: subtracted once from every token already in the output; 0 = none. */
  presencePenalty?: number;
  /** OpenAI's: subtracted from every token as many times as it is in the output; 0 = none. */
  frequencyPenalty?: number;
  /** Added to the logits of these token ids. */
  logitBias?: ReadonlyMap<number, number>;
}

/**
 * The logit changes that depend on what came before, kept up to date token by token: the
 * repetition penalty over the prompt and the output, then presence and frequency penalties over
 * the output only (as OpenAI and vLLM count them), then the logit bias.
 */
export class LogitAdjuster {
  private readonly seen: Set<number>;
  private readonly counts = new Map<number, number>();
  readonly active: boolean;

  constructor(private readonly o: LogitAdjustOptions, prompt: Iterable<number>) {
    this.seen = new Set(o.repetitionPenalty === 1 ? [] : prompt);
    this.active = o.repetitionPenalty !== 1 || !!o.presencePenalty || !!o.frequencyPenalty || (o.logitBias?.size ?? 0) > 0;
  }

  /** In place, on the logits of the next token. */
  apply(logits: Float32Array): void {
    if (!this.active) return;
    applyRepetitionPenalty(logits, this.seen, this.o.repetitionPenalty);
    const presence = this.o.presencePenalty ?? 0, frequency = this.o.frequencyPenalty ?? 0;
    if (presence !== 0 || frequency !== 0) {
      for (const [id, n] of this.counts) logits[id] -= presence + frequency * n;
    }
    if (this.o.logitBias) for (const [id, bias] of this.o.logitBias) if (id >= 0 && id < logits.length) logits[id] += bias;
  }

  /** A token was chosen: it now counts as in the output. */
  accept(id: number): void {
    if (!this.active) return;
    if (this.o.repetitionPenalty !== 1) this.seen.add(id);
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
  }
}

/**
 * The distribution sampling draws from, as (ids, probabilities) in decreasing probability:
 * temperature, then top-k, then top-p, then min-p (top-p and min-p always keep the most likely token).
 */
export function candidates(logits: ArrayLike<number>, o: Pick<SamplingOptions, 'temperature' | 'topK' | 'topP' | 'minP'>): { ids: number[]; probs: number[] } {
  const V = logits.length;
  const minP = o.minP ?? 0;
  const k = o.topK > 0 && o.topK < V ? o.topK : V;
  let ids: number[];
  if (k < V) {
    ids = topKIndices(logits, k);
  } else {
    ids = Array.from({ length: V }, (_, i) => i);
    if (o.topP < 1 || minP > 0) ids.sort((x, y) => logits[y] - logits[x] || x - y);
  }
  let max = -Infinity;
  for (const i of ids) if (logits[i] > max) max = logits[i];
  const inv = 1 / o.temperature;
  let probs = ids.map((i) => Math.exp((logits[i] - max) * inv));
  let sum = probs.reduce((a, b) => a + b, 0);
  if (o.topP < 1) {
    // ids are sorted here: keep tokens until their mass reaches topP.
    let acc = 0, keep = 0;
    while (keep < ids.length) {
      acc += probs[keep++] / sum;
      if (acc >= o.topP) break;
    }
    ids = ids.slice(0, keep);
    probs = probs.slice(0, keep);
    sum = probs.reduce((a, b) => a + b, 0);
  }
  if (minP > 0) {
    // Sorted, and probs[0] is the largest: keep the prefix at least minP times as likely.
    let keep = 1;
    while (keep < ids.length && probs[keep] >= minP * probs[0]) keep++;
    ids = ids.slice(0, keep);
    probs = probs.slice(0, keep);
    sum = probs.reduce((a, b) => a + b, 0);
  }
  return { ids, probs: probs.map((p) => p / sum) };
}

/** The k largest entries' indices, largest first (ties: lower index first). */
export function topKIndices(v: ArrayLike<number>, k: number): number[] {
  const better = (x: number, y: number) => v[x] > v[y] || (v[x] === v[y] && x < y);
  // A min-heap of the best k seen so far: O(V log k).
  const heap: number[] = [];
  const down = (i: number) => {
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < heap.length && better(heap[m], heap[l])) m = l;
      if (r < heap.length && better(heap[m], heap[r])) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m], heap[i]];
      i = m;
    }
  };
  for (let i = 0; i < v.length; i++) {
    if (heap.length < k) {
      heap.push(i);
      for (let j = heap.length - 1; j > 0;) {
        const p = (j - 1) >> 1;
        if (!better(heap[p], heap[j])) break;
        [heap[p], heap[j]] = [heap[j], heap[p]];
        j = p;
      }
    } else if (better(i, heap[0])) {
      heap[0] = i;
      down(0);
    }
  }
  return heap.sort((x, y) => (better(x, y) ? -1 : 1));
}

/**
 * Which tokens may be sampled (JSON mode): `allows` answers for one id, `mask` for the whole
 * vocabulary (1 = allowed), the costly way, asked for only when the first draw is refused.
 */
export interface TokenFilter {
  allows(id: number): boolean;
  mask(): Uint8Array;
}

/**
 * The next token. `logits` is modified in place by the repetition penalty; `context` is the ids
 * the penalty looks at (the prompt and what was generated). With a `filter`, the draw is from the
 * same distribution restricted to the allowed tokens: a first draw that is allowed is kept, else
 * the restricted distribution is drawn from, which gives each allowed y exactly p(y) / p(allowed).
 * When truncation (top-k, top-p, min-p) keeps no allowed token, it runs again over the allowed ones.
 */
export function sampleToken(logits: Float32Array, o: SamplingOptions, rng: Rng, context: Iterable<number> = [], filter?: TokenFilter): number {
  applyRepetitionPenalty(logits, context, o.repetitionPenalty);
  const greedy = o.temperature === 0 || o.topK === 1;
  const all = (o.topK === 0 || o.topK >= logits.length) && o.topP >= 1 && !((o.minP ?? 0) > 0);
  const first = greedy ? argmax(logits) : all ? drawFromAll(logits, o.temperature, rng()) : pick(candidates(logits, o), rng());
  if (!filter || filter.allows(first)) return first;
  const mask = filter.mask();
  if (greedy) return argmax(logits, mask);
  if (all) return drawFromAll(logits, o.temperature, rng(), mask);
  let kept = restrict(candidates(logits, o), mask);
  if (kept.ids.length === 0) kept = restrict(candidates(logits.map((x, i) => (mask[i] ? x : -Infinity)), o), mask);
  return pick(kept, rng());
}

/** The id a uniform draw `u` lands on, walking the probabilities in order. */
function pick({ ids, probs }: { ids: number[]; probs: number[] }, u: number): number {
  let acc = 0;
  for (let i = 0; i < ids.length; i++) {
    acc += probs[i];
    if (u < acc) return ids[i];
  }
  return ids[ids.length - 1];
}

/** The candidates the mask allows (with a probability above 0), renormalised. */
function restrict(c: { ids: number[]; probs: number[] }, mask: Uint8Array): { ids: number[]; probs: number[] } {
  const ids: number[] = [], probs: number[] = [];
  let sum = 0;
  for (let i = 0; i < c.ids.length; i++) {
    if (!mask[c.ids[i]] || !(c.probs[i] > 0)) continue;
    ids.push(c.ids[i]);
    probs.push(c.probs[i]);
    sum += c.probs[i];
  }
  return { ids, probs: probs.map((p) => p / sum) };
}

/**
 * The draw candidates() and the walk above make when every token is kept, without building V-long
 * arrays (20 ms a token at a 49k vocabulary): the same sums in the same order, so the same id.
 * With a mask, over the allowed tokens only.
 */
function drawFromAll(logits: Float32Array, temperature: number, u: number, mask?: Uint8Array): number {
  const V = logits.length, inv = 1 / temperature;
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[i] > max && (!mask || mask[i])) max = logits[i];
  let sum = 0;
  for (let i = 0; i < V; i++) if (!mask || mask[i]) sum += Math.exp((logits[i] - max) * inv);
  let acc = 0, last = V - 1;
  for (let i = 0; i < V; i++) {
    if (mask && !mask[i]) continue;
    acc += Math.exp((logits[i] - max) * inv) / sum;
    last = i;
    if (u < acc) return i;
  }
  return last;
}

/** A token's log-probability under the model, and its most likely alternatives. */
export interface TokenLogprobs {
  /** log p(id) under softmax(logits), natural log. */
  logprob: number;
  /** The `top` most likely ids with their log-probabilities, most likely first (ties: lower id first). */
  top: Array<{ id: number; logprob: number }>;
}

/**
 * The model's own distribution at a step: log-softmax of the raw logits in float64, before the
 * penalty, temperature and truncation that sampling applies (as OpenAI's API and vLLM report
 * them), so the numbers do not change with the sampling options.
 */
export function tokenLogprobs(logits: ArrayLike<number>, id: number, top: number): TokenLogprobs {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  const ids = top > 0 ? topKIndices(logits, Math.min(top, logits.length)) : [];
  return { logprob: logits[id] - lse, top: ids.map((i) => ({ id: i, logprob: logits[i] - lse })) };
}
