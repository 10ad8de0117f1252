import { madd } from "./simd";
import { exp4 } from "./math";

/**
 * SwiGLU over rows: out[r, i] = silu(gate[r, i]) · up[r, i], silu(g) = g / (1 + exp(−g)),
 * where gate[r, i] = gu[r·ldgu + i] and up[r, i] = gu[r·ldgu + n + i] (gate and up side by side,
 * as one fused projection writes them). out row r at out + r·ldo·4. out may equal gu.
 */
export function swiglu(gu: usize, ldgu: i32, out: usize, ldo: i32, rows: i32, n: i32): void {
  const upOff = <usize>n << 2;
  for (let r = 0; r < rows; r++) {
    const g = gu + ((<usize>r * <usize>ldgu) << 2);
    const u = g + upOff;
    const o = out + ((<usize>r * <usize>ldo) << 2);
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      const b = <usize>i << 2;
      v128.store(o + b, f32x4.mul(silu4(v128.load(g + b)), v128.load(u + b)));
    }
    for (; i < n; i++) {
      const b = <usize>i << 2;
      store<f32>(o + b, f32x4.extract_lane(silu4(f32x4.splat(load<f32>(g + b))), 0) * load<f32>(u + b));
    }
  }
}

/**
 * silu(g) = g · sigmoid(g), with e = exp(−|g|) ≤ 1 so nothing overflows:
 * sigmoid(g) = 1 / (1 + e) for g ≥ 0 and e / (1 + e) for g < 0. Accurate to a few ulps over the
 * whole range (the tiny negative tail included); silu(±inf) = ±inf·… is not needed.
 */
// @ts-ignore: decorator
@inline function silu4(g: v128): v128 {
  const one = f32x4.splat(1.0);
  const e = exp4(f32x4.neg(f32x4.abs(g)));
  const num = v128.bitselect(one, e, f32x4.ge(g, f32x4.splat(0)));
  return f32x4.div(f32x4.mul(g, num), f32x4.add(one, e));
}

/** a[i] += b[i] for i < n (the residual add). */
export function add(a: usize, b: usize, n: i32): void {
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    const o = <usize>i << 2;
    v128.store(a + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
    v128.store(a + o, f32x4.add(v128.load(a + o, 16), v128.load(b + o, 16)), 16);
    v128.store(a + o, f32x4.add(v128.load(a + o, 32), v128.load(b + o, 32)), 32);
    v128.store(a + o, f32x4.add(v128.load(a + o, 48), v128.load(b + o, 48)), 48);
  }
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(a + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(a + o, load<f32>(a + o) + load<f32>(b + o));
  }
}

/** y[i] += alpha · x[i] for i < n (weighted sum of expert outputs). */
export function axpy(y: usize, x: usize, alpha: f32, n: i32): void {
  const av = f32x4.splat(alpha);
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    const o = <usize>i << 2;
    v128.store(y + o, madd(av, v128.load(x + o), v128.load(y + o)));
    v128.store(y + o, madd(av, v128.load(x + o, 16), v128.load(y + o, 16)), 16);
    v128.store(y + o, madd(av, v128.load(x + o, 32), v128.load(y + o, 32)), 32);
    v128.store(y + o, madd(av, v128.load(x + o, 48), v128.load(y + o, 48)), 48);
  }
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, madd(av, v128.load(x + o), v128.load(y + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, alpha * load<f32>(x + o) + load<f32>(y + o));
  }
}

/** out row t = table row ids[t] (dim values), for t < count; ids are i32 and already validated. */
export function embed(table: usize, dim: i32, ids: usize, count: i32, out: usize): void {
  const rowBytes = <usize>dim << 2;
  for (let t = 0; t < count; t++) {
    const id = <usize>load<i32>(ids + (<usize>t << 2));
    memory.copy(out + <usize>t * rowBytes, table + id * rowBytes, rowBytes);
  }
}

/** Index of the first NaN or ±inf among x[0..n), or −1 (the check of every step's logits). */
export function first_nonfinite(x: usize, n: i32): i32 {
  // x − x is 0 for a finite x and NaN otherwise; OR-ing four such differences keeps a NaN's bits.
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    const o = <usize>i << 2;
    let v = v128.load(x + o), w = v128.load(x + o, 16), y = v128.load(x + o, 32), z = v128.load(x + o, 48);
    const d = v128.or(v128.or(f32x4.sub(v, v), f32x4.sub(w, w)), v128.or(f32x4.sub(y, y), f32x4.sub(z, z)));
    if (v128.any_true(f32x4.ne(d, d))) break;
  }
  for (; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    if (v - v != 0) return i;
  }
  return -1;
}
