import { madd, hsum } from "./simd";

/**
 * RMSNorm of `rows` rows of `dim` values: y = x / sqrt(mean(x²) + eps) · w.
 * x row r at x + r·ldx·4, y row r at y + r·ldy·4; y may equal x (in place).
 */
export function rmsnorm(x: usize, ldx: i32, w: usize, y: usize, ldy: i32,
                        rows: i32, dim: i32, eps: f32): void {
}
