// The source model's forward pass in float64 JS, one layer at a time, to collect each layer's
// attention input (RMSNorm(h) · input_layernorm, the input of k_proj/v_proj). A conversion reads
// one layer's weights at a time anyway; running the wasm decoder would need a hook inside its
// forward pass and the whole model placed in the heap, for a few thousand calibration tokens.
import type { ModelConfig, GroupedAttention } from '../formats/config.js';

export type Read = (name: string) => Float32Array;

/** y[t, :] = W · x[t, :] for W [rows, cols] (f32) and x [T, cols] (f64). */
export function project(W: Float32Array, rows: number, cols: number, x: Float64Array, T: number): Float64Array {
  const y = new Float64Array(T * rows);
  for (let t = 0; t < T; t++) {
    const xo = t * cols;
    for (let r = 0; r < rows; r++) {
      const wo = r * cols;
      let s = 0;
      for (let c = 0; c < cols; c++) s += W[wo + c] * x[xo + c];
      y[t * rows + r] = s;
    }
  }
  return y;
}

export function rmsNorm(h: Float64Array, T: number, d: number, w: Float32Array, eps: number): Float64Array {
  const y = new Float64Array(T * d);
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let i = 0; i < d; i++) ss += h[t * d + i] ** 2;
    const inv = 1 / Math.sqrt(ss / d + eps);
    for (let i = 0; i < d; i++) y[t * d + i] = h[t * d + i] * inv * w[i];
  }
  return y;
}

/** Hidden states after the embedding, for sequences (each a window of token ids). */
export function embed(read: Read, c: ModelConfig, seqs: number[][]): Float64Array {
  const d = c.hidden, E = read('model.embed_tokens.weight');
  const T = seqs.reduce((n, s) => n + s.length, 0);
  const h = new Float64Array(T * d);
  let t = 0;
  for (const s of seqs) for (const id of s) { for (let i = 0; i < d; i++) h[t * d + i] = E[id * d + i]; t++; }
  return h;
}

/**
 * One Llama layer over h (in place), sequences laid end to end: returns the attention input x
 * (before the layer changes h), which is what calibration wants.
 */
export function llamaLayer(read: Read, c: ModelConfig, l: number, h: Float64Array, seqs: number[][]): Float64Array {
  const a = c.attention as GroupedAttention, d = c.hidden, hd = a.headDim, H = a.heads, G = a.kvHeads, half = hd / 2;
  const T = h.length / d, p = `model.layers.${l}.`;
  const x = rmsNorm(h, T, d, read(p + 'input_layernorm.weight'), c.rmsEps);
  const q = project(read(p + 'self_attn.q_proj.weight'), H * hd, d, x, T);
  const k = project(read(p + 'self_attn.k_proj.weight'), G * hd, d, x, T);
  const v = project(read(p + 'self_attn.v_proj.weight'), G * hd, d, x, T);
  // RoPE, Llama's half split, positions restarting at each sequence.
  let t0 = 0;
  for (const s of seqs) {
    for (let j = 0; j < s.length; j++) {
      const t = t0 + j;
      for (let i = 0; i < half; i++) {
        const ang = j * Math.pow(c.ropeTheta, (-2 * i) / hd), cs = Math.cos(ang), sn = Math.sin(ang);
        for (const [buf, n] of [[q, H], [k, G]] as const) {
          for (let hh = 0; hh < n; hh++) {
            const o = t * n * hd + hh * hd, x0 = buf[o + i], x1 = buf[o + i + half];
            buf[o + i] = x0 * cs - x1 * sn;
            buf[o + i + half] = x1 * cs + x0 * sn;
          }
        }
      }
    }
    t0 += s.length;
  }
  const o = new Float64Array(T * H * hd), scale = 1 / Math.sqrt(hd), sc = new Float64Array(T);
  t0 = 0;
  for (const s of seqs) {
    for (let hh = 0; hh < H; hh++) {
      const g = Math.floor(hh / (H / G));
      for (let i = 0; i < s.length; i++) {
        const qo = (t0 + i) * H * hd + hh * hd;
        let m = -Infinity;
        for (let j = 0; j <= i; j++) {
          const ko = (t0 + j) * G * hd + g * hd;
          let dot = 0;
          for (let e = 0; e < hd; e++) dot += q[qo + e] * k[ko + e];
          sc[j] = dot * scale;
          if (sc[j] > m) m = sc[j];
        }
        let z = 0;
        for (let j = 0; j <= i; j++) { sc[j] = Math.exp(sc[j] - m); z += sc[j]; }
        for (let j = 0; j <= i; j++) {
          const vo = (t0 + j) * G * hd + g * hd, wgt = sc[j] / z;
          for (let e = 0; e < hd; e++) o[qo + e] += wgt * v[vo + e];
        }
      }
    }
    t0 += s.length;
  }
  const u = project(read(p + 'self_attn.o_proj.weight'), d, H * hd, o, T);
  for (let i = 0; i < h.length; i++) h[i] += u[i];
  const I = c.ffn[l].kind === 'dense' ? c.ffn[l].intermediate : 0;
  const xn = rmsNorm(h, T, d, read(p + 'post_attention_layernorm.weight'), c.rmsEps);
  const gate = project(read(p + 'mlp.gate_proj.weight'), I, d, xn, T);
  const up = project(read(p + 'mlp.up_proj.weight'), I, d, xn, T);
  for (let i = 0; i < gate.length; i++) gate[i] = (gate[i] / (1 + Math.exp(-gate[i]))) * up[i];
  const dn = project(read(p + 'mlp.down_proj.weight'), d, I, gate, T);
  for (let i = 0; i < h.length; i++) h[i] += dn[i];
  return x;
}

/** Σ = Xᵀ X / T (d×d), the second moment of the attention inputs. */
export function secondMoment(x: Float64Array, d: number): Float64Array {
  const T = x.length / d, S = new Float64Array(d * d);
  for (let t = 0; t < T; t++) {
    const o = t * d;
    for (let i = 0; i < d; i++) {
      const xi = x[o + i];
      for (let j = i; j < d; j++) S[i * d + j] += xi * x[o + j];
    }
  }
  for (let i = 0; i < d; i++) for (let j = i; j < d; j++) { S[i * d + j] /= T; S[j * d + i] = S[i * d + j]; }
  return S;
}
