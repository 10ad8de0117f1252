import { madd, hsum } from "./simd";

/**
 * RMSNorm of `rows` rows of `dim` values: y = x / sqrt(mean(x²) + eps) · w.
 * x row r at x + r·ldx·4, y row r at y + r·ldy·4; y may equal x (in place).
 */
export function rmsnorm(x: usize, ldx: i32, w: usize, y: usize, ldy: i32,
                        rows: i32, dim: i32, eps: f32): void {
  if (dim <= 0) return;
  for (let r = 0; r < rows; r++) {
    const xr = x + ((<usize>r * <usize>ldx) << 2);
    const yr = y + ((<usize>r * <usize>ldy) << 2);
    // Sum of squares in four independent f32x4 accumulators (16 lanes).
    let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
    let i = 0;
    for (; i + 16 <= dim; i += 16) {
      const p = xr + (<usize>i << 2);
      const a = v128.load(p), b = v128.load(p, 16), c = v128.load(p, 32), d = v128.load(p, 48);
      s0 = madd(a, a, s0); s1 = madd(b, b, s1); s2 = madd(c, c, s2); s3 = madd(d, d, s3);
    }
    for (; i + 4 <= dim; i += 4) {
      const a = v128.load(xr + (<usize>i << 2));
      s0 = madd(a, a, s0);
    }
    let ss = hsum(f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3)));
    for (; i < dim; i++) {
      const a = load<f32>(xr + (<usize>i << 2));
      ss += a * a;
    }
    const inv: f32 = <f32>1.0 / Mathf.sqrt(ss / <f32>dim + eps);
    // y = (x · inv) · w, the order of Hugging Face's RMSNorm.
    const vinv = f32x4.splat(inv);
    i = 0;
    for (; i + 4 <= dim; i += 4) {
      const o = <usize>i << 2;
      v128.store(yr + o, f32x4.mul(f32x4.mul(v128.load(xr + o), vinv), v128.load(w + o)));
    }
    for (; i < dim; i++) {
      const o = <usize>i << 2;
      store<f32>(yr + o, load<f32>(xr + o) * inv * load<f32>(w + o));
    }
  }
}
