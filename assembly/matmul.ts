// f32 matrix products. All pointers are byte offsets into memory; all strides
// (lda, ldb, ldc, ldw) are in elements (f32), row-major.
import { madd, hsum } from "./simd";

/** Bytes of scratch that matmul_nt / matmul_nn need in `pack` for these k, n. */
export function matmul_pack_bytes(k: i32, n: i32): i32 {
  // TODO(kernel): size of the packed B block
  return 0;
}

/**
 * C[m, n] = A[m, k] · B[n, k]ᵀ   (B is a weight in Hugging Face [out, in] layout).
 * Overwrites C. `pack` is scratch of matmul_pack_bytes(k, n) bytes.
 */
export function matmul_nt(a: usize, lda: i32, b: usize, ldb: i32, c: usize, ldc: i32,
                          m: i32, k: i32, n: i32, pack: usize): void {
}

/** C[m, n] = A[m, k] · B[k, n]. Overwrites C. `pack` as for matmul_nt. */
export function matmul_nn(a: usize, lda: i32, b: usize, ldb: i32, c: usize, ldc: i32,
                          m: i32, k: i32, n: i32, pack: usize): void {
}

/** y[n] = W[n, k] · x[k]   (decode path: one pass over W's rows). */
export function matvec(w: usize, ldw: i32, x: usize, y: usize, n: i32, k: i32): void {
}

/** y[n] = x[k] · W[k, n]   (transposed product: one pass over W's rows). */
export function vecmat(x: usize, w: usize, ldw: i32, y: usize, k: i32, n: i32): void {
}
