import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  attentionScale, expectedTensorShapes, makeRandomCheckpoint, mlaAttention, mlaLatent, mlaQuery, mlaRotateQuery,
  moeFfn, moeRoute, referenceForward, ropeSetup, tensorsFromSafetensors, tinyLlamaConfig, tinyMlaConfig,
  tinyMlaMoeV2Config, tinyMlaMoeV3Config, yarnCorrectionRange, yarnFreqs, yarnMscale,
  type HfConfig, type Tensors,
} from './model.js';
import { ropeFreqs } from './ops.js';

const MODELS = '/work/shared/models';

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

function loadModel(name: string): { config: HfConfig; tensors: Tensors } {
  const dir = `${MODELS}/${name}`;
  return {
    config: JSON.parse(readFileSync(`${dir}/config.json`, 'utf8')),
    tensors: tensorsFromSafetensors(new Uint8Array(readFileSync(`${dir}/model.safetensors`)), `${name}/model.safetensors`),
  };
}

/** Held-out records as token ids: BOS 256, the UTF-8 bytes, EOS 257; cut to maxTokens. */
function heldOutRecords(name: string, count: number, maxTokens: number): number[][] {
  const texts: string[] = JSON.parse(readFileSync(`${MODELS}/${name}/val_records.json`, 'utf8'));
  return texts.slice(0, count).map((s) => [256, ...new TextEncoder().encode(s), 257].slice(0, maxTokens));
}

/** Total next-token cross-entropy (nats) and number of predictions of one sequence. */
function crossEntropy(logits: Float64Array, ids: number[], V: number): { nats: number; n: number } {
  let nats = 0;
  for (let t = 0; t + 1 < ids.length; t++) {
    const row = logits.subarray(t * V, (t + 1) * V);
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v);
    let sum = 0;
    for (const v of row) sum += Math.exp(v - max);
    nats += max + Math.log(sum) - row[ids[t + 1]];
  }
  return { nats, n: ids.length - 1 };
}

function meanLoss(config: HfConfig, tensors: Tensors, records: number[][]): number {
  let nats = 0, n = 0;
  for (const ids of records) {
    const r = crossEntropy(referenceForward(config, tensors, ids), ids, config.vocab_size);
    nats += r.nats; n += r.n;
  }
  return nats / n;
}

/** Copy of a checkpoint with rows of one weight permuted: new row r = old row perm(r). */
function permuteRows(tensors: Tensors, name: string, perm: (r: number) => number): Tensors {
  const t = tensors[name];
  const cols = t.shape[1], data = new Float32Array(t.data.length);
  for (let r = 0; r < t.shape[0]; r++) data.set(t.data.subarray(perm(r) * cols, (perm(r) + 1) * cols), r * cols);
  return { ...tensors, [name]: { shape: t.shape, data } };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function randomIds(n: number, V: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 8) % V);
}

function randomRows(n: number, seed: number): Float64Array {
  let s = seed >>> 0;
  return Float64Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1);
}

// ---------------------------------------------------------------------------------------------
// (a) the reference means what the trained weights mean
// ---------------------------------------------------------------------------------------------

describe('reference on the real fortune models', () => {
  const RECORDS = 8, MAX_TOKENS = 64;

  it('fortune-mla (DeepSeek-V2 MLA): held-out loss near the README 1.453 nats/byte; the wrong RoPE pairing is worse', () => {
    const { config, tensors } = loadModel('fortune-mla');
    expect([...expectedTensorShapes(config).keys()].sort()).toEqual(Object.keys(tensors).sort());
    const records = heldOutRecords('fortune-mla', RECORDS, MAX_TOKENS);
    const loss = meanLoss(config, tensors, records);
    console.log(`fortune-mla reference loss: ${loss.toFixed(4)} nats/byte over ${records.length} records (≤ ${MAX_TOKENS} tokens)`);
    expect(loss).toBeGreaterThan(1.2);
    expect(loss).toBeLessThan(1.75);
    expect(loss).toBeCloseTo(1.4148, 2); // measured when this test was written (regression pin)

    // Reorder the rotary rows so that DeepSeek's adjacent-pair RoPE acts on them as Llama's half split
    // would act on the stored rows: the same weights read with the wrong convention.
    const H = config.num_attention_heads, dn = config.qk_nope_head_dim, dr = config.qk_rope_head_dim, dc = config.kv_lora_rank;
    const toHalf = (k: number) => (k % 2 === 0 ? k / 2 : dr / 2 + (k - 1) / 2); // new 2k ← old k, new 2k+1 ← old k + dr/2
    let wrong = tensors;
    for (let l = 0; l < config.num_hidden_layers; l++) {
      const p = `model.layers.${l}.self_attn`;
      wrong = permuteRows(wrong, `${p}.q_b_proj.weight`, (r) => {
        const h = Math.floor(r / (dn + dr)), c = r % (dn + dr);
        return c < dn ? r : h * (dn + dr) + dn + toHalf(c - dn);
      });
      wrong = permuteRows(wrong, `${p}.kv_a_proj_with_mqa.weight`, (r) => (r < dc ? r : dc + toHalf(r - dc)));
    }
    const wrongLoss = meanLoss(config, wrong, records);
    console.log(`fortune-mla with half-split RoPE pairing: ${wrongLoss.toFixed(4)}`);
    expect(wrongLoss).toBeGreaterThan(loss + 0.05);
  });

  it('fortune-gqa (Llama GQA): held-out loss near the README 1.453 nats/byte; the wrong RoPE pairing is worse', () => {
    const { config, tensors } = loadModel('fortune-gqa');
    expect([...expectedTensorShapes(config).keys()].sort()).toEqual(Object.keys(tensors).sort());
    const records = heldOutRecords('fortune-gqa', RECORDS, MAX_TOKENS);
    const loss = meanLoss(config, tensors, records);
    console.log(`fortune-gqa reference loss: ${loss.toFixed(4)} nats/byte over ${records.length} records (≤ ${MAX_TOKENS} tokens)`);
    expect(loss).toBeGreaterThan(1.2);
    expect(loss).toBeLessThan(1.75);
    expect(loss).toBeCloseTo(1.4529, 2); // measured when this test was written (regression pin)

    // Reorder q and k rows per head so that Llama's half split acts as adjacent pairs would.
    const hd = config.head_dim;
    const toPairs = (c: number) => (c < hd / 2 ? 2 * c : 2 * (c - hd / 2) + 1); // new k ← old 2k, new k+hd/2 ← old 2k+1
    let wrong = tensors;
    for (let l = 0; l < config.num_hidden_layers; l++) {
      for (const w of ['q_proj', 'k_proj']) {
        wrong = permuteRows(wrong, `model.layers.${l}.self_attn.${w}.weight`, (r) => Math.floor(r / hd) * hd + toPairs(r % hd));
      }
    }
    const wrongLoss = meanLoss(config, wrong, records);
    console.log(`fortune-gqa with adjacent-pair RoPE pairing: ${wrongLoss.toFixed(4)}`);
    expect(wrongLoss).toBeGreaterThan(loss + 0.05);
  });
});

// ---------------------------------------------------------------------------------------------
// (b) invariances
// ---------------------------------------------------------------------------------------------

const TINY: [string, HfConfig][] = [
  ['MLA, q_lora_rank 32', tinyMlaConfig()],
  ['MLA, q_lora_rank null', tinyMlaConfig({ q_lora_rank: null })],
  ['MLA, DeepSeek-V2 MoE', tinyMlaMoeV2Config()],
  ['MLA, DeepSeek-V3 MoE + YaRN', tinyMlaMoeV3Config()],
  ['MLA, tied embeddings + attention bias', tinyMlaConfig({ tie_word_embeddings: true, attention_bias: true })],
  ['Llama GQA', tinyLlamaConfig()],
  ['Llama MQA', tinyLlamaConfig({ num_key_value_heads: 1 })],
  ['Llama MHA, default head_dim, tied, biases', tinyLlamaConfig({
    num_key_value_heads: 4, head_dim: undefined, tie_word_embeddings: true, attention_bias: true, mlp_bias: true,
  })],
];

describe('reference invariances on tiny random models', () => {
  it.each(TINY)('%s: causal (logits at t ignore tokens after t) and not degenerate', (_name, config) => {
    const tensors = makeRandomCheckpoint(config, 7);
    const V = config.vocab_size, T = 12, cut = 7;
    const a = randomIds(T, V, 1);
    const b = [...a.slice(0, cut), ...randomIds(T - cut, V, 2)];
    expect(b.slice(cut)).not.toEqual(a.slice(cut));
    const la = referenceForward(config, tensors, a), lb = referenceForward(config, tensors, b);
    expect(la.length).toBe(T * V);
    expect(maxAbsDiff(la.subarray(0, cut * V), lb.subarray(0, cut * V))).toBe(0);
    expect(maxAbsDiff(la.subarray(cut * V), lb.subarray(cut * V))).toBeGreaterThan(1e-3);
    expect(la.every(Number.isFinite)).toBe(true);
    // Logits are O(1) and vary with position: the random checkpoint exercises the model.
    expect(maxAbs(la)).toBeGreaterThan(0.5);
    expect(maxAbsDiff(la.subarray(0, V), la.subarray(V, 2 * V))).toBeGreaterThan(0.1);
  });

  it('a random checkpoint has exactly the tensors the config implies', () => {
    const t = makeRandomCheckpoint(tinyMlaMoeV3Config(), 1);
    expect(t['model.layers.1.mlp.gate.e_score_correction_bias'].shape).toEqual([8]);
    expect(t['model.layers.1.mlp.shared_experts.gate_proj.weight'].shape).toEqual([32, 64]);
    expect(t['model.layers.1.mlp.experts.7.down_proj.weight'].shape).toEqual([64, 32]);
    expect(t['model.layers.0.mlp.gate_proj.weight'].shape).toEqual([96, 64]);
    expect(t['model.layers.0.self_attn.kv_b_proj.weight'].shape).toEqual([4 * (16 + 12), 24]);
    expect(t['model.layers.0.self_attn.q_b_proj.weight'].shape).toEqual([4 * (16 + 8), 32]);
    expect(t['model.layers.0.mlp.experts.0.gate_proj.weight']).toBeUndefined();
    const v2 = makeRandomCheckpoint(tinyMlaMoeV2Config(), 1);
    expect(v2['model.layers.1.mlp.shared_experts.up_proj.weight'].shape).toEqual([64, 64]);
    expect(v2['model.layers.1.mlp.gate.e_score_correction_bias']).toBeUndefined();
    expect(v2['model.layers.0.self_attn.q_proj.weight'].shape).toEqual([4 * 24, 64]);
    const freq2 = makeRandomCheckpoint(tinyMlaMoeV2Config({ num_hidden_layers: 4, moe_layer_freq: 2 }), 1);
    expect(Object.keys(freq2).filter((k) => k.endsWith('mlp.gate.weight'))).toEqual(['model.layers.2.mlp.gate.weight']);
  });

  // docs/mla.md §3: the absorbed form, computed here on its own.
  function absorbedAttention(config: HfConfig, tensors: Tensors, layer: number, x: Float64Array, T: number): Float64Array {
    const d = config.hidden_size, H = config.num_attention_heads;
    const dn = config.qk_nope_head_dim, dr = config.qk_rope_head_dim, dv = config.v_head_dim, dc = config.kv_lora_rank;
    const q = mlaQuery(config, tensors, layer, x, T);
    mlaRotateQuery(config, q, T);
    const { ckv, kR } = mlaLatent(config, tensors, layer, x, T);
    const W = tensors[`model.layers.${layer}.self_attn.kv_b_proj.weight`].data; // [H, d_n + d_v, d_c]
    const Wat = (i: number, row: number, c: number) => W[(i * (dn + dv) + row) * dc + c];
    const s = attentionScale(config);
    const o = new Float64Array(T * H * dv);
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < H; i++) {
        const base = (t * H + i) * (dn + dr);
        const qt = new Float64Array(dc); // q̃_i = W_UK_iᵀ · q_i^C
        for (let n = 0; n < dn; n++) for (let c = 0; c < dc; c++) qt[c] += Wat(i, n, c) * q[base + n];
        const scores: number[] = [];
        for (let j = 0; j <= t; j++) {
          let sc = 0;
          for (let c = 0; c < dc; c++) sc += qt[c] * ckv[j * dc + c];
          for (let r = 0; r < dr; r++) sc += q[base + dn + r] * kR[j * dr + r];
          scores.push(sc * s);
        }
        const m = Math.max(...scores);
        const p = scores.map((v) => Math.exp(v - m));
        const z = p.reduce((a, b) => a + b, 0);
        const ot = new Float64Array(dc); // õ_i = Σ_j p_j c_kv_j
        for (let j = 0; j <= t; j++) for (let c = 0; c < dc; c++) ot[c] += (p[j] / z) * ckv[j * dc + c];
        for (let v = 0; v < dv; v++) { // o_i = W_UV_i · õ_i
          let acc = 0;
          for (let c = 0; c < dc; c++) acc += Wat(i, dn + v, c) * ot[c];
          o[(t * H + i) * dv + v] = acc;
        }
      }
    }
    const Wo = tensors[`model.layers.${layer}.self_attn.o_proj.weight`].data;
    const out = new Float64Array(T * d);
    for (let t = 0; t < T; t++) {
      for (let r = 0; r < d; r++) {
        let acc = 0;
        for (let c = 0; c < H * dv; c++) acc += Wo[r * H * dv + c] * o[t * H * dv + c];
        out[t * d + r] = acc;
      }
    }
    return out;
  }

  it.each([
    ['q_lora_rank 32', tinyMlaConfig()],
    ['q_lora_rank null', tinyMlaConfig({ q_lora_rank: null })],
    ['YaRN', tinyMlaMoeV3Config()],
  ] as [string, HfConfig][])('naive MLA equals the absorbed formulation to 1e-9 (%s)', (_n, config) => {
    const tensors = makeRandomCheckpoint(config, 11);
    const T = 10;
    const x = randomRows(T * config.hidden_size, 5);
    for (const layer of [0, 1]) {
      const naive = mlaAttention(config, tensors, layer, x, T);
      const absorbed = absorbedAttention(config, tensors, layer, x, T);
      expect(maxAbs(naive)).toBeGreaterThan(0.1);
      expect(maxAbsDiff(naive, absorbed) / maxAbs(naive)).toBeLessThan(1e-9);
    }
  });
});

describe('YaRN', () => {
  it('reproduces the correction range and ramp for DeepSeek-V2-Lite rotary dims', () => {
    // corr(32) = 64·ln(4096/(64π))/(2 ln 10⁴) = 10.47 → 10; corr(1) = 64·ln(4096/(2π))/(2 ln 10⁴) = 22.51 → 23.
    expect(yarnCorrectionRange(64, 10000, 4096, 32, 1)).toEqual([10, 23]);
    const f = ropeFreqs(64, 10000), y = yarnFreqs(64, 10000, 40, 4096, 32, 1);
    for (let k = 0; k <= 10; k++) expect(y[k]).toBe(f[k]); // high frequencies kept
    for (let k = 23; k < 32; k++) expect(y[k]).toBeCloseTo(f[k] / 40, 15); // low frequencies interpolated
    const ramp = (16 - 10) / 13;
    expect(y[16]).toBeCloseTo((f[16] / 40) * ramp + f[16] * (1 - ramp), 15);
    // mscale: V2-Lite rope_scaling (factor 40, mscale = mscale_all_dim = 0.707).
    const config = tinyMlaConfig({
      qk_nope_head_dim: 128, qk_rope_head_dim: 64,
      rope_scaling: { type: 'yarn', factor: 40, original_max_position_embeddings: 4096, beta_fast: 32, beta_slow: 1, mscale: 0.707, mscale_all_dim: 0.707 },
    });
    const m = 0.1 * 0.707 * Math.log(40) + 1;
    expect(attentionScale(config)).toBeCloseTo((m * m) / Math.sqrt(192), 14);
    expect(ropeSetup(config).cosSinScale).toBe(1);
  });

  it('handles low == high (the +0.001) and the HF mscale/mscale_all_dim ratio', () => {
    expect(yarnCorrectionRange(8, 10000, 4, 32, 1)).toEqual([0, 0]);
    const f = ropeFreqs(8, 10000), y = yarnFreqs(8, 10000, 4, 4, 32, 1);
    expect(y[0]).toBe(f[0]);
    for (let k = 1; k < 4; k++) expect(y[k]).toBeCloseTo(f[k] / 4, 15);
    // mscale_all_dim absent: no softmax change, cos/sin scaled by mscale(factor, 1).
    const c = tinyMlaConfig({ rope_scaling: { type: 'yarn', factor: 4, original_max_position_embeddings: 32, mscale: 1 } });
    expect(attentionScale(c)).toBe(1 / Math.sqrt(24));
    expect(ropeSetup(c).cosSinScale).toBeCloseTo(0.1 * Math.log(4) + 1, 15);
    expect(yarnMscale(1, 0.707)).toBe(1);
    expect(yarnMscale(0.5, 1)).toBe(1);
  });

  it('factor 1 is exactly no scaling; factor 1.0001 is a tiny change', () => {
    const yarn = (factor: number) => ({ type: 'yarn', factor, original_max_position_embeddings: 32, beta_fast: 32, beta_slow: 1, mscale: 0.707, mscale_all_dim: 0.707 });
    const plain = tinyMlaConfig({ rope_theta: 100 });
    const tensors = makeRandomCheckpoint(plain, 3);
    const ids = randomIds(40, plain.vocab_size, 9);
    const ref = referenceForward(plain, tensors, ids);
    const one = referenceForward(tinyMlaConfig({ rope_theta: 100, rope_scaling: yarn(1) }), tensors, ids);
    expect(maxAbsDiff(ref, one)).toBeLessThan(1e-12);
    const near = referenceForward(tinyMlaConfig({ rope_theta: 100, rope_scaling: yarn(1.0001) }), tensors, ids);
    const dn = maxAbsDiff(ref, near);
    expect(dn).toBeGreaterThan(0);
    expect(dn).toBeLessThan(1e-2);
    const four = referenceForward(tinyMlaConfig({ rope_theta: 100, rope_scaling: yarn(4) }), tensors, ids);
    expect(maxAbsDiff(ref, four)).toBeGreaterThan(1e-2);
  });
});

describe('MoE routing', () => {
  const logit = (p: number) => Math.log(p / (1 - p));
  const softmax = (v: number[]) => { const e = v.map(Math.exp); const s = e.reduce((a, b) => a + b, 0); return e.map((x) => x / s); };

  it('DeepSeek-V2 greedy: softmax top-k, optional renormalisation, × routed_scaling_factor', () => {
    const logits = [0, 3, 1, 2.5, -1, 2.9];
    const base = { n_routed_experts: 6, num_experts_per_tok: 2, scoring_func: 'softmax', topk_method: 'greedy', routed_scaling_factor: 1.5 };
    const p = softmax(logits);
    const r = moeRoute({ ...base, norm_topk_prob: false }, logits);
    expect(r.experts).toEqual([1, 5]);
    expect(r.weights[0]).toBeCloseTo(p[1] * 1.5, 15);
    expect(r.weights[1]).toBeCloseTo(p[5] * 1.5, 15);
    const n = moeRoute({ ...base, norm_topk_prob: true }, logits);
    expect(n.experts).toEqual([1, 5]);
    expect(n.weights[0]).toBeCloseTo((p[1] / (p[1] + p[5])) * 1.5, 15);
  });

  it('DeepSeek-V2 group_limited_greedy keeps the groups with the best single expert', () => {
    const logits = [5, -5, 4, 4, 4.5, -9, 0, 0]; // 4 groups of 2: maxima 5, 4, 4.5, 0
    const cfg = { n_routed_experts: 8, num_experts_per_tok: 3, scoring_func: 'softmax', n_group: 4, topk_group: 2 };
    expect(moeRoute({ ...cfg, topk_method: 'greedy' }, logits).experts).toEqual([0, 4, 2]);
    expect(moeRoute({ ...cfg, topk_method: 'group_limited_greedy' }, logits).experts).toEqual([0, 4, 1]);
  });

  it('DeepSeek-V3 noaux_tc: groups by top-2 biased sum, bias for selection only, renormalised × scale', () => {
    const probs = [0.95, 0.05, 0.8, 0.8, 0.7, 0.7, 0.1, 0.1];
    const logits = probs.map(logit);
    const cfg = {
      n_routed_experts: 8, num_experts_per_tok: 2, scoring_func: 'sigmoid', topk_method: 'noaux_tc',
      n_group: 4, topk_group: 2, norm_topk_prob: true, routed_scaling_factor: 2.5,
    };
    // Group sums 1.0, 1.6, 1.4, 0.2: groups 1 and 2 stay, so the single best expert 0 is not chosen.
    const a = moeRoute(cfg, logits, new Array(8).fill(0));
    expect(a.experts).toEqual([2, 3]);
    expect(a.weights[0]).toBeCloseTo(2.5 * 0.5, 12);
    // A bias of +0.3 on expert 4 makes it the top choice, but its weight is its unbiased score.
    const bias = [0, 0, 0, 0, 0.3, 0, 0, 0];
    const b = moeRoute(cfg, logits, bias);
    expect(b.experts).toEqual([4, 2]);
    expect(b.weights[0]).toBeCloseTo((2.5 * 0.7) / 1.5, 12);
    expect(b.weights[1]).toBeCloseTo((2.5 * 0.8) / 1.5, 12);
    // Without groups the best expert wins.
    expect(moeRoute({ ...cfg, n_group: 1, topk_group: 1 }, logits, new Array(8).fill(0)).experts).toEqual([0, 2]);
  });

  it('a MoE layer depends on the selected experts only, and the bias only through the selection', () => {
    const config = tinyMlaMoeV3Config();
    const tensors = makeRandomCheckpoint(config, 21);
    const x = randomRows(config.hidden_size, 3);
    const p = 'model.layers.1.mlp';
    const y = moeFfn(config, tensors, 1, x, 1);
    // The gate logits of this token, to know the route.
    const G = tensors[`${p}.gate.weight`].data, E = config.n_routed_experts, d = config.hidden_size;
    const logits = Array.from({ length: E }, (_, e) => { let s = 0; for (let i = 0; i < d; i++) s += G[e * d + i] * x[i]; return s; });
    const route = moeRoute(config, logits, tensors[`${p}.gate.e_score_correction_bias`].data);
    expect(route.experts.length).toBe(3);
    const scaled = (name: string) => {
      const t = tensors[name];
      return { ...tensors, [name]: { shape: t.shape, data: t.data.map((v) => v * 2) } };
    };
    const unused = [...Array(E).keys()].find((e) => !route.experts.includes(e))!;
    expect(maxAbsDiff(moeFfn(config, scaled(`${p}.experts.${unused}.down_proj.weight`), 1, x, 1), y)).toBe(0);
    expect(maxAbsDiff(moeFfn(config, scaled(`${p}.experts.${route.experts[0]}.down_proj.weight`), 1, x, 1), y)).toBeGreaterThan(1e-6);
    expect(maxAbsDiff(moeFfn(config, scaled(`${p}.shared_experts.down_proj.weight`), 1, x, 1), y)).toBeGreaterThan(1e-6);
    // Shifting every bias equally keeps the selection, so the output is unchanged.
    const bname = `${p}.gate.e_score_correction_bias`;
    const shifted = { ...tensors, [bname]: { shape: [E], data: tensors[bname].data.map((v) => v + 0.25) } };
    expect(maxAbsDiff(moeFfn(config, shifted, 1, x, 1), y)).toBe(0);
  });
});
