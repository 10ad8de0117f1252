// What `mla-wasm info` reports: parameter count, and the KV cache per token of this model beside
// what MHA, GQA, MQA and MLA would cache with the same head dims (docs/mla.md §4).
import type { ModelConfig } from '../formats/config.js';
import { KvCache } from './kv-cache.js';
import { expectedTensors } from './weights.js';

/** Parameters the checkpoint holds (every tensor the config implies). */
export function parameterCount(c: ModelConfig): number {
  let n = 0;
  for (const shape of expectedTensors(c).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}

export interface CacheRow {
  /** e.g. "MLA (this model)", "GQA, 2 groups". */
  label: string;
  /** How the numbers follow from the dims, e.g. "d_c + d_r = 48 + 16". */
  formula: string;
  /** Numbers cached per token per layer. */
  numbers: number;
  /** Bytes per token over all layers, in float32. */
  bytesPerToken: number;
  isThisModel: boolean;
}

/**
 * The cache of this model and of its equivalents: the same heads and head dims with MHA, GQA (every
 * group count between 1 and H that divides H), MQA and MLA. For a model that is not MLA, the MLA row
 * uses DeepSeek-V2's own choice of latent dims for a head dim d_h: d_c = 4·d_h, d_r = d_h/2.
 */
export function cacheEquivalents(c: ModelConfig): CacheRow[] {
  const a = c.attention;
  const H = a.heads;
  const kDim = a.kind === 'mla' ? a.nopeDim + a.ropeDim : a.headDim;
  const vDim = a.vDim;
  const kv = `(${kDim} + ${vDim})`;
  const row = (label: string, formula: string, numbers: number, isThisModel: boolean): CacheRow =>
    ({ label, formula, numbers, bytesPerToken: KvCache.bytesFor(1, c.layers, numbers), isThisModel });
  const thisKvHeads = a.kind === 'gqa' ? a.kvHeads : -1;
  const name = (g: number) => (g === H ? 'MHA' : g === 1 ? 'MQA' : `GQA, ${g} groups`);
  const rows: CacheRow[] = [];
  for (let g = H; g >= 1; g--) {
    if (H % g) continue;
    const f = g === H ? `H·(d_k + d_v) = ${H}·${kv}` : g === 1 ? `d_k + d_v = ${kDim} + ${vDim}` : `g·(d_k + d_v) = ${g}·${kv}`;
    rows.push(row(name(g) + (g === thisKvHeads ? ' (this model)' : ''), f, g * (kDim + vDim), g === thisKvHeads));
  }
  if (a.kind === 'mla') {
    rows.push(row('MLA (this model)', `d_c + d_r = ${a.kvLoraRank} + ${a.ropeDim}`, KvCache.rowNumbers(a), true));
  } else {
    const dc = 4 * a.headDim, dr = a.headDim / 2;
    rows.push(row('MLA (DeepSeek-V2 ratios)', `d_c + d_r = 4·d_h + d_h/2 = ${dc} + ${dr}`, dc + dr, false));
  }
  return rows;
}
