// Symmetric eigendecomposition in float64: Householder reduction to tridiagonal form, then the
// implicit QL algorithm with shifts (the classic tred2/tql2 pair, written from the textbook
// method). O(n³), about 100 ms for n = 384, which is the largest matrix a conversion needs.

/** Eigenvalues (descending) and unit eigenvectors (column k of the row-major n×n `vectors`) of symmetric `a` (n×n, row-major; not modified). */
export function symmetricEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  // Held transposed (Vt[j][i] is element (i, j)), so that the O(n³) loops, which walk down
  // columns, run along contiguous rows: the same arithmetic in the same order, several times faster.
  const Vt: Float64Array[] = [];
  for (let j = 0; j < n; j++) {
    const col = new Float64Array(n);
    for (let i = 0; i < n; i++) col[i] = a[i * n + j];
    Vt.push(col);
  }
  const d = new Float64Array(n), e = new Float64Array(n);
  tridiagonalize(Vt, d, e, n);
  diagonalize(Vt, d, e, n);
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[y] - d[x]);
  const values = new Float64Array(n), vectors = new Float64Array(n * n);
  order.forEach((src, k) => {
    values[k] = d[src];
    for (let i = 0; i < n; i++) vectors[i * n + k] = Vt[src][i];
  });
  return { values, vectors };
}

function tridiagonalize(Vt: Float64Array[], d: Float64Array, e: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) d[j] = Vt[j][n - 1];
  for (let i = n - 1; i > 0; i--) {
    let scale = 0, h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) { d[j] = Vt[j][i - 1]; Vt[j][i] = 0; Vt[i][j] = 0; }
    } else {
      for (let k = 0; k < i; k++) { d[k] /= scale; h += d[k] * d[k]; }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j];
        Vt[i][j] = f;
        g = e[j] + Vt[j][j] * f;
        for (let k = j + 1; k <= i - 1; k++) { g += Vt[j][k] * d[k]; e[k] += Vt[j][k] * f; }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) { e[j] /= h; f += e[j] * d[j]; }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        f = d[j]; g = e[j];
        for (let k = j; k <= i - 1; k++) Vt[j][k] -= f * e[k] + g * d[k];
        d[j] = Vt[j][i - 1];
        Vt[j][i] = 0;
      }
    }
    d[i] = h;
  }
  // Accumulate the transformations.
  for (let i = 0; i < n - 1; i++) {
    Vt[i][n - 1] = Vt[i][i];
    Vt[i][i] = 1;
    const h = d[i + 1];
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = Vt[i + 1][k] / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += Vt[i + 1][k] * Vt[j][k];
        for (let k = 0; k <= i; k++) Vt[j][k] -= g * d[k];
      }
    }
    for (let k = 0; k <= i; k++) Vt[i + 1][k] = 0;
  }
  for (let j = 0; j < n; j++) { d[j] = Vt[j][n - 1]; Vt[j][n - 1] = 0; }
  Vt[n - 1][n - 1] = 1;
  e[0] = 0;
}

function diagonalize(Vt: Float64Array[], d: Float64Array, e: Float64Array, n: number): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  let f = 0, tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n && Math.abs(e[m]) > eps * tst1) m++;
    if (m === n) m = n - 1;
    if (m > l) {
      do {
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        p = d[m];
        let c = 1, c2 = c, c3 = c, s = 0, s2 = 0;
        const el1 = e[l + 1];
        for (let i = m - 1; i >= l; i--) {
          c3 = c2; c2 = c; s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          for (let k = 0; k < n; k++) {
            h = Vt[i + 1][k];
            Vt[i + 1][k] = s * Vt[i][k] + c * h;
            Vt[i][k] = c * Vt[i][k] - s * h;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
}
