import { describe, expect, it } from 'vitest';
import { symmetricEigen } from '../src/convert/eigen.js';
import { assignMinCost } from '../src/convert/assign.js';
import { driftCost } from '../src/convert/rope.js';

// Deterministic pseudo-random numbers in [-1, 1).
const rand = (seed: number) => () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 1073741824 - 1; };

/** A random orthogonal n×n matrix (Gram–Schmidt of random columns), row-major. */
function orthogonal(n: number, seed: number): Float64Array {
  const r = rand(seed), Q = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const v = Array.from({ length: n }, r);
    for (let p = 0; p < k; p++) {
      let d = 0;
      for (let i = 0; i < n; i++) d += v[i] * Q[i * n + p];
      for (let i = 0; i < n; i++) v[i] -= d * Q[i * n + p];
    }
    const nv = Math.hypot(...v);
    for (let i = 0; i < n; i++) Q[i * n + k] = v[i] / nv;
  }
  return Q;
}

/** Q · diag(λ) · Qᵀ. */
function compose(Q: Float64Array, lambda: number[], n: number): Float64Array {
  const A = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += Q[i * n + k] * lambda[k] * Q[j * n + k];
    A[i * n + j] = s;
  }
  return A;
}

/** Largest |A·v_k − λ_k·v_k| and |VᵀV − I| entries, and whether the values descend. */
function check(A: Float64Array, n: number) {
  const { values, vectors: V } = symmetricEigen(A, n);
  let residual = 0, ortho = 0;
  for (let k = 0; k < n; k++) for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += A[i * n + j] * V[j * n + k];
    residual = Math.max(residual, Math.abs(s - values[k] * V[i * n + k]));
  }
  for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += V[i * n + a] * V[i * n + b];
    ortho = Math.max(ortho, Math.abs(s - (a === b ? 1 : 0)));
  }
  const descending = values.every((v, k) => k === 0 || values[k - 1] >= v);
  return { values, residual, ortho, descending };
}

describe('symmetricEigen', () => {
  it.each([1, 2, 3, 17])('diagonal n = %i: the diagonal, sorted, unit vectors', (n) => {
    const diag = Array.from({ length: n }, (_, i) => ((i * 7) % n) - n / 3);
    const A = new Float64Array(n * n);
    diag.forEach((v, i) => { A[i * n + i] = v; });
    const { values, residual, ortho, descending } = check(A, n);
    expect([...values]).toEqual([...diag].sort((a, b) => b - a));
    expect(residual).toBe(0);
    expect(ortho).toBeLessThan(1e-15);
    expect(descending).toBe(true);
  });

  it.each([2, 3, 17, 64])('rotated n = %i: known eigenvalues back, A·v = λv, orthonormal', (n) => {
    const r = rand(n), lambda = Array.from({ length: n }, () => 10 * r());
    const A = compose(orthogonal(n, 11 * n), lambda, n);
    const { values, residual, ortho } = check(A, n);
    const want = [...lambda].sort((a, b) => b - a);
    for (let k = 0; k < n; k++) expect(values[k]).toBeCloseTo(want[k], 11);
    expect(residual).toBeLessThan(1e-11);
    expect(ortho).toBeLessThan(1e-12);
  });

  it.each([3, 17])('repeated eigenvalues n = %i: still an orthonormal eigenbasis', (n) => {
    const lambda = Array.from({ length: n }, (_, i) => (i < n - 1 ? 2 : -1)); // 2 with multiplicity n − 1
    const A = compose(orthogonal(n, 5), lambda, n);
    const { values, residual, ortho } = check(A, n);
    for (let k = 0; k < n - 1; k++) expect(values[k]).toBeCloseTo(2, 12);
    expect(values[n - 1]).toBeCloseTo(-1, 12);
    expect(residual).toBeLessThan(1e-12);
    expect(ortho).toBeLessThan(1e-12);
  });

  it('a rank-deficient and a zero matrix', () => {
    const n = 17, lambda = Array.from({ length: n }, (_, i) => (i < 3 ? i + 1 : 0));
    const low = check(compose(orthogonal(n, 9), lambda, n), n);
    expect(low.values[0]).toBeCloseTo(3, 12);
    expect(Math.abs(low.values[3])).toBeLessThan(1e-12);
    expect(low.residual).toBeLessThan(1e-12);
    const zero = check(new Float64Array(n * n), n);
    expect([...zero.values].every((v) => v === 0)).toBe(true);
    expect(zero.ortho).toBeLessThan(1e-15);
  });

  it('leaves its input alone', () => {
    const A = compose(orthogonal(5, 3), [1, 2, 3, 4, 5], 5), copy = Float64Array.from(A);
    symmetricEigen(A, 5);
    expect(A).toEqual(copy);
  });
});

describe('assignMinCost', () => {
  /** Every injective assignment of n rows to m columns, for small n, m: the true minimum. */
  function bruteForce(C: Float64Array, n: number, m: number): number {
    let best = Infinity;
    const used = new Uint8Array(m);
    const go = (i: number, sum: number): void => {
      if (i === n) { best = Math.min(best, sum); return; }
      for (let j = 0; j < m; j++) if (!used[j]) { used[j] = 1; go(i + 1, sum + C[i * m + j]); used[j] = 0; }
    };
    go(0, 0);
    return best;
  }

  it.each([[1, 1], [1, 4], [3, 3], [4, 7], [6, 6], [5, 9]])('n = %i rows, m = %i columns: the brute-force minimum, distinct columns', (n, m) => {
    const r = rand(n * 31 + m), C = Float64Array.from({ length: n * m }, () => r() + 1);
    const col = assignMinCost(C, n, m);
    expect(new Set(col).size).toBe(n);
    let total = 0;
    col.forEach((j, i) => { expect(j).toBeGreaterThanOrEqual(0); expect(j).toBeLessThan(m); total += C[i * m + j]; });
    expect(total).toBeCloseTo(bruteForce(C, n, m), 12);
  });

  it('more rows than columns is a RangeError', () => {
    expect(() => assignMinCost(new Float64Array(6), 3, 2)).toThrow(RangeError);
  });
});

describe('driftCost (closed form)', () => {
  it.each([1, 2, 7, 192])('W = %i: the direct mean of 1 − cos(δΔ) weighted by W − Δ', (W) => {
    for (const delta of [0, 1e-7, 1e-3, 0.3, 1, Math.PI, 2 * Math.PI, 7]) {
      let s = 0, n = 0;
      for (let D = 0; D < W; D++) { s += (W - D) * (1 - Math.cos(delta * D)); n += W - D; }
      expect(driftCost(delta, W)).toBeCloseTo(s / n, 9);
    }
  });
});
