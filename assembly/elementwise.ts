import { madd } from "./simd";

/**
 * SwiGLU over rows: out[r, i] = silu(gate[r, i]) · up[r, i], silu(g) = g / (1 + exp(−g)),
 * where gate[r, i] = gu[r·ldgu + i] and up[r, i] = gu[r·ldgu + n + i] (gate and up side by side,
 * as one fused projection writes them). out row r at out + r·ldo·4. out may equal gu.
 */
export function swiglu(gu: usize, ldgu: i32, out: usize, ldo: i32, rows: i32, n: i32): void {
}

/** a[i] += b[i] for i < n (the residual add). */
export function add(a: usize, b: usize, n: i32): void {
}

/** y[i] += alpha · x[i] for i < n (weighted sum of expert outputs). */
export function axpy(y: usize, x: usize, alpha: f32, n: i32): void {
}

/** out row t = table row ids[t] (dim values), for t < count; ids are i32 and already validated. */
export function embed(table: usize, dim: i32, ids: usize, count: i32, out: usize): void {
}
