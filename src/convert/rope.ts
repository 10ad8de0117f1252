// The shared rotary key of a converted layer. Per source frequency, the G KV heads' key pairs are
// G complex numbers; any unitary mix of them commutes with the rotation (a complex phase), so a
// complex PCA (the real 2G×2G covariance averaged with its 90°-turned self) splits the frequency
// into G components (a real PCA would miss head pairs whose keys differ by a phase). Weighting
// the groups by their queries' energy was tried and lost slightly on fortune-gqa. Components go
// to the rungs of DeepSeek's geometric ladder by a min-cost assignment, where putting a component
// of frequency ω on a rung of frequency ω' (0: left unrotated, in the nope part) costs its energy
// times the mean of 1 − cos((ω − ω')Δ) over the query–key distances Δ of a window.
import { symmetricEigen } from './eigen.js';
import { assignMinCost } from './assign.js';

export interface RotaryInput {
  Wk: Float32Array;
  /** Σ-weighted key rows (Σ·row), or the rows themselves for plain weights. */
  KS: Float64Array;
  d: number; headDim: number; kvHeads: number;
  /** Source rope θ (its frequencies are θ^(−2i/headDim)). */
  theta: number; window: number;
}

/** Source frequency i, energy, and the unit vectors (v, Jv) over the 2G rows (g, re/im), as [v ; Jv]. */
interface Component { i: number; energy: number; basis: Float64Array }

export interface RotaryPlan {
  /** Rungs' key rows, [ropeDim, d]: rung j's pair at rows 2j, 2j+1 (DeepSeek's adjacent pairs). */
  kRope: Float64Array;
  /** Per placed component: rung j, source frequency i, and per group g the complex weight (a_g, b_g) a query pair is turned by. */
  placed: { j: number; i: number; a: Float64Array; b: Float64Array }[];
  energy: number; keptEnergy: number; cost: number;
}

const dotRows = (A: ArrayLike<number>, i: number, B: ArrayLike<number>, j: number, d: number): number => {
  let s = 0;
  for (let k = 0; k < d; k++) s += A[i * d + k] * B[j * d + k];
  return s;
};

/** Per frequency, G complex components, largest first. */
export function rotaryComponents(x: RotaryInput): Component[] {
  const { Wk, KS, d, headDim: hd, kvHeads: G } = x;
  const half = hd / 2, n = 2 * G, out: Component[] = [];
  const keyRow = (g: number, s: number): number => g * hd + s * half; // + i
  for (let i = 0; i < half; i++) {
    // Real covariance of the 2G rows (g, re/im), then averaged with Jᵀ M J (J: (re, im) → (−im, re)).
    const M = new Float64Array(n * n);
    for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) {
      M[r * n + c] = dotRows(Wk, keyRow(r >> 1, r & 1) + i, KS, keyRow(c >> 1, c & 1) + i, d);
    }
    const Jv = (v: Float64Array): Float64Array => { const o = new Float64Array(n); for (let g = 0; g < G; g++) { o[2 * g] = -v[2 * g + 1]; o[2 * g + 1] = v[2 * g]; } return o; };
    const A = new Float64Array(n * n);
    for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) {
      // (Jᵀ M J)[r][c] = Σ J[a][r] M[a][b] J[b][c]; J[2g+1][2g] = 1, J[2g][2g+1] = −1.
      const ra = r & 1 ? r - 1 : r + 1, ca = c & 1 ? c - 1 : c + 1, sr = r & 1 ? -1 : 1, sc = c & 1 ? -1 : 1;
      A[r * n + c] = 0.5 * (M[r * n + c] + sr * sc * M[ra * n + ca]);
    }
    const { vectors } = symmetricEigen(A, n);
    const picked: Float64Array[] = [];
    for (let k = 0; k < n && picked.length < n; k++) {
      const v = Float64Array.from({ length: n }, (_, r) => vectors[r * n + k]);
      for (const b of picked) { let p = 0; for (let r = 0; r < n; r++) p += v[r] * b[r]; for (let r = 0; r < n; r++) v[r] -= p * b[r]; }
      let nv = 0; for (let r = 0; r < n; r++) nv += v[r] * v[r];
      if (nv < 1e-6) continue;
      for (let r = 0; r < n; r++) v[r] /= Math.sqrt(nv);
      const f = Jv(v);
      picked.push(v, f);
      let energy = 0;
      for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) energy += v[r] * A[r * n + c] * v[c];
      const vf = new Float64Array(2 * n);
      vf.set(v, 0); vf.set(f, n);
      out.push({ i, energy: Math.max(energy, 0), basis: vf });
    }
  }
  return out;
}

/**
 * Mean of 1 − cos(δΔ) over a window's query–key pairs (distance Δ occurs W − Δ times), in closed
 * form: Σ (W − Δ) cos(δΔ) over Δ < W is (W + F)/2 with F = sin²(Wδ/2)/sin²(δ/2), Fejér's kernel.
 */
export function driftCost(delta: number, W: number): number {
  const s = Math.sin(delta / 2);
  const F = Math.abs(s) < 1e-9 ? W * W : (Math.sin((W * delta) / 2) / s) ** 2;
  return 1 - (W + F) / (W * (W + 1));
}

/** Rung j of a ladder with `spacing` rungs per source frequency step sits at source index j/spacing. */
export function placementCost(comps: Component[], rungs: number, spacing: number, x: Pick<RotaryInput, 'theta' | 'headDim' | 'window'>): { cost: number; rungOf: Int32Array } {
  const freq = (p: number): number => Math.pow(x.theta, (-2 * p) / x.headDim);
  const n = comps.length, cols = rungs + n, C = new Float64Array(n * cols);
  for (let c = 0; c < n; c++) {
    const w = freq(comps[c].i), e = comps[c].energy;
    for (let j = 0; j < rungs; j++) C[c * cols + j] = e * driftCost(w - freq(j / spacing), x.window);
    const none = e * driftCost(w, x.window);
    for (let k = rungs; k < cols; k++) C[c * cols + k] = none;
  }
  const col = assignMinCost(C, n, cols);
  let cost = 0;
  const rungOf = new Int32Array(n);
  for (let c = 0; c < n; c++) { cost += C[c * cols + col[c]]; rungOf[c] = col[c] < rungs ? col[c] : -1; }
  return { cost, rungOf };
}

/** Places the components on `ropeDim/2` rungs; subtracts what is placed from K (the nope residual, in place). */
export function placeRotary(x: RotaryInput, comps: Component[], ropeDim: number, spacing: number, K: Float64Array): RotaryPlan {
  const { Wk, d, headDim: hd, kvHeads: G } = x;
  const half = hd / 2, n = 2 * G, R = ropeDim / 2;
  const { cost, rungOf } = placementCost(comps, R, spacing, x);
  const kRope = new Float64Array(ropeDim * d), placed: RotaryPlan['placed'] = [];
  let energy = 0, keptEnergy = 0;
  comps.forEach((cp, c) => {
    energy += cp.energy;
    const j = rungOf[c];
    if (j < 0) return;
    keptEnergy += cp.energy;
    const rowOf = (r: number): number => (r >> 1) * hd + cp.i + (r & 1) * half;
    for (const [s, row] of [[0, 2 * j], [1, 2 * j + 1]] as const) {
      for (let r = 0; r < n; r++) {
        const p = cp.basis[s * n + r];
        for (let k = 0; k < d; k++) kRope[row * d + k] += p * Wk[rowOf(r) * d + k];
      }
      // What each head's key keeps outside the placed components.
      for (let r = 0; r < n; r++) {
        const u = cp.basis[s * n + r];
        for (let k = 0; k < d; k++) K[rowOf(r) * d + k] -= u * kRope[row * d + k];
      }
    }
    placed.push({ j, i: cp.i, a: Float64Array.from({ length: G }, (_, g) => cp.basis[2 * g]), b: Float64Array.from({ length: G }, (_, g) => cp.basis[2 * g + 1]) });
  });
  return { kRope, placed, energy, keptEnergy, cost };
}
