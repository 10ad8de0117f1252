// What a forward pass must do at the least, from the config alone: the bytes a decode step reads
// and the flops a step or a prefill computes. The bench divides them by same-run probes of this
// machine (DRAM read bandwidth, compute peak) to get each row's floor.
import { expectedTensors, formatChooser, KvCache, matrixBytes, weightBytes, weightPlan, type CacheFormat, type MatrixFormat, type ModelConfig,
  type WeightPlan, type WeightsOption } from '../src/internal.js';

export type Path = 'absorbed' | 'naive';

const EMBED = 'model.embed_tokens.weight';

/** Numbers in the matrices one token multiplies by: every projection, lm_head; not the embedding table (one row is read). */
export function matrixNumbers(c: ModelConfig): number {
  let n = 0;
  for (const [name, shape] of expectedTensors(c)) {
    if (shape.length !== 2) continue;
    if (name === EMBED && !c.tieEmbeddings) continue;
    n += shape[0] * shape[1];
  }
  return n;
}

/** Numbers in the lm_head (its flops are paid for the last row of a prefill only). */
function lmHeadNumbers(c: ModelConfig): number {
  return c.vocabSize * c.hidden;
}

/** Numbers of the 1-D tensors (norm weights), also read every step. */
function vectorNumbers(c: ModelConfig): number {
  let n = 0;
  for (const shape of expectedTensors(c).values()) if (shape.length === 1) n += shape[0];
  return n;
}

/** Bytes a decode step must read at context S (f32): its weights once, one embedding row, every layer's cache. */
export function decodeBytes(c: ModelConfig, S: number): { weights: number; cache: number } {
  const weights = (matrixNumbers(c) + vectorNumbers(c) + c.hidden) * 4;
  const cache = KvCache.bytes(c, S);
  return { weights, cache };
}

/**
 * Bytes a decode step reads at context S with weights in `weights` (the formats loadModel picks for
 * it, scales included) and a `cache`-format cache: every matrix once, the norms, one embedding row.
 */
/**
 * decodeBytesFor's weight bytes split by the format each matrix is kept in (the embedding counted
 * as one row), for the compute floor: each format's bytes / the rate its kernel decodes them at.
 */
export function decodeBytesByFormat(c: ModelConfig, weights: Exclude<WeightsOption, 'auto'>): Map<MatrixFormat, number> {
  const shapes = expectedTensors(c), base = weightPlan(weights), out = new Map<MatrixFormat, number>();
  const plan: WeightPlan = (names, role, cols) => {
    const format = base(names, role, cols);
    if (format === 'mixed') throw new Error(`${weights} weights are never mixed`);
    const rows = role === 'embed' ? 1 : names.reduce((r, n) => r + shapes.get(n)![0], 0);
    out.set(format, (out.get(format) ?? 0) + matrixBytes(format, rows, cols));
    return format;
  };
  weightBytes(c, plan);
  return out;
}

export function decodeBytesFor(c: ModelConfig, S: number, weights: Exclude<WeightsOption, 'auto'>, cache: CacheFormat = 'f32'): { weights: number; cache: number } {
  const embed = formatChooser(weights)('embed', c.hidden, []);
  if (embed === 'mixed') throw new Error('an embedding table is one tensor, never mixed');
  const table = c.tieEmbeddings ? 0 : matrixBytes(embed, c.vocabSize, c.hidden) - matrixBytes(embed, 1, c.hidden);
  return { weights: weightBytes(c, weightPlan(weights)) - table, cache: KvCache.bytes(c, S, cache) };
}

/** Flops of attention for one query over S keys, one layer, by path. */
function attentionFlopsPerQuery(c: ModelConfig, S: number, path: Path): number {
  const a = c.attention;
  if (a.kind === 'gqa') return 2 * a.heads * S * (a.headDim + a.vDim);
  if (path === 'absorbed') return 2 * a.heads * S * (a.kvLoraRank + a.ropeDim + a.kvLoraRank);
  return 2 * a.heads * S * (a.nopeDim + a.ropeDim + a.vDim);
}

/**
 * Flops of one decode step at context S (the new token attends to S + 1 positions). Naive MLA
 * also expands every cached latent row into per-head keys and values, each step.
 */
export function decodeFlops(c: ModelConfig, S: number, path: Path): number {
  const a = c.attention;
  let f = 2 * matrixNumbers(c) + c.layers * attentionFlopsPerQuery(c, S + 1, path);
  if (a.kind === 'mla' && path === 'naive') f += c.layers * 2 * S * a.kvLoraRank * a.heads * (a.nopeDim + a.vDim);
  return f;
}

/**
 * Flops of a prefill of T tokens from position 0, the least any implementation does: every
 * projection once per token (MLA's kv_b_proj expands each token's latent once), causal attention
 * over T(T+1)/2 (query, key) pairs at the per-head dims, lm_head for the last row only.
 */
export function prefillFlops(c: ModelConfig, T: number): number {
  const perTokenMatrices = 2 * (matrixNumbers(c) - lmHeadNumbers(c));
  const pairs = (T * (T + 1)) / 2;
  return T * perTokenMatrices + 2 * lmHeadNumbers(c) + c.layers * attentionFlopsPerQuery(c, 1, 'naive') * pairs;
}
