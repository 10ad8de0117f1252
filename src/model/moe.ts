// DeepSeek MoE routing (docs/mla.md §7), on the host: a few dozen router scores per token.
import type { MoeFfn } from '../formats/config.js';

/** Indices of the k largest values among those `allowed`, largest first (ties: lower index). */
function topK(values: ArrayLike<number>, k: number, allowed: (i: number) => boolean = () => true): number[] {
  const idx: number[] = [];
  for (let i = 0; i < values.length; i++) if (allowed(i)) idx.push(i);
  idx.sort((a, b) => values[b] - values[a] || a - b);
  return idx.slice(0, k);
}

/**
 * Choose `f.topK` experts for one token from its router logits and return their weights.
 *  V2 (softmax, greedy or group_limited_greedy): softmax scores; groups ranked by their best score.
 *  V3 (sigmoid, noaux_tc): sigmoid scores; selection by score + e_score_correction_bias, groups ranked
 *  by the sum of their top-2 biased scores; weights are the unbiased scores.
 * Then weights are renormalised when norm_topk_prob (and topK > 1), and times routed_scaling_factor.
 */
export function routeToken(f: MoeFfn, logits: Float32Array, bias: Float32Array | null,
                           experts: Int32Array, weights: Float32Array): void {
  const E = f.experts;
  const scores = new Float64Array(E);
  if (f.scoring === 'softmax') {
    let max = -Infinity, sum = 0;
    for (let e = 0; e < E; e++) max = Math.max(max, logits[e]);
    for (let e = 0; e < E; e++) sum += (scores[e] = Math.exp(logits[e] - max));
    for (let e = 0; e < E; e++) scores[e] /= sum;
  } else {
    for (let e = 0; e < E; e++) scores[e] = 1 / (1 + Math.exp(-logits[e]));
  }
  const choice = bias ? scores.map((s, e) => s + bias[e]) : scores;
  let allowed: (e: number) => boolean = () => true;
  if (f.method !== 'greedy' && f.groups > 1) {
    const per = E / f.groups;
    const groupScore = Array.from({ length: f.groups }, (_, g) => {
      const members = choice.subarray(g * per, (g + 1) * per);
      return f.method === 'noaux_tc'
        ? topK(members, 2).reduce((s, i) => s + members[i], 0)
        : Math.max(...members);
    });
    const keep = new Set(topK(groupScore, f.topkGroup));
    allowed = (e) => keep.has(Math.floor(e / per));
  }
  const chosen = topK(choice, f.topK, allowed);
  let sum = 0;
  for (const e of chosen) sum += scores[e];
  const norm = f.normTopk && f.topK > 1 ? 1 / (sum + 1e-20) : 1;
  chosen.forEach((e, i) => { experts[i] = e; weights[i] = scores[e] * norm * f.scale; });
}
