// f32 matrix products. All pointers are byte offsets into memory; all strides
// (lda, ldb, ldc, ldw) are in elements (f32), row-major.
//
// matmul_nt (C = A·Bᵀ, B a weight in [out, in] layout: every projection) with at most DOT_MAX_M
// rows of A (prefill chunks, attention key blocks) multiplies rows by rows, both contiguous in k,
// with no packing: a tile of DA rows of A × DB rows of B keeps DA·DB f32x4 accumulators over k and
// reduces each to one number at the end (see "NT dot tiles" below).
//
// matmul_nn, and matmul_nt with more rows, is a packed, cache-blocked product in the GotoBLAS /
// BLIS shape:
//
//   for jc in n by NC                    B block of NC columns
//     for pc in k by KC                  packed into `pack` as NR-wide panels [kk][0..NR)
//       for ic in m by MC                A block MC×KC, read in place (stays in L2)
//         for jr in NC by NR             one panel, KC×NR (stays in L1)
//           for ir in MC by MR           micro-kernel: C[ir.., jr..] (+)= A[ir.., pc..] · panel
//
// Its micro-kernel keeps an MR×NR tile of C in v128 accumulators, loads NR/4 vectors of the panel
// and broadcasts one A element per row each k step (v128.load32_splat: vbroadcastss from memory
// on x86), and multiplies with `madd`. NT and NN differ only in how a panel is packed. Panels are
// zero-padded at the n edge, so the micro-kernel always computes NR columns and stores only those
// that exist.
//
// Why these shapes (measured with Node 20 on x86): V8 hands out 15 xmm registers and schedules all
// the loads of a loop body before its arithmetic, so a k step may hold at most 15 vectors:
// accumulators + loaded vectors (+ one product in the plain build, whose multiply and add are
// separate). The FMA's 4-cycle latency on two pipes wants more than 8 independent chains, so the
// relaxed build takes 9 accumulators (NN 3×12: 9 + 3 B + 3 A; NT 3×3: 9 + 3 + 3) where the plain
// build takes 8 (NN 4×8: 8 + 2 + 4 + 1; NT 2×4: 8 + 2 + 4 + 1). The packed 4×8 kernel in the
// relaxed build reached 0.83–0.86 of the peak probe, 3×12 0.86–0.93; 3×12 spills in the plain
// build (0.39), 6×8 and 5×8 in both (0.40–0.45); in the plain build a 2×16 tile tied with 4×8
// but wastes more at the n edge. KC 384 or 512 measured the same as 256. Packing A as well
// measured 3–6% slower: V8 does not fold a load32_splat offset into the address.
import { madd, hsum } from "./simd";

// @ts-ignore: decorator
@inline const MR: i32 = ASC_FEATURE_RELAXED_SIMD ? 3 : 4;  // rows of C per micro-kernel tile
// Columns of C per tile (NR/4 v128), in each build: matmul_split_cols needs both.
// @ts-ignore: decorator
@inline const NR_SIMD: i32 = 8;
// @ts-ignore: decorator
@inline const NR_RELAXED: i32 = 12;
// @ts-ignore: decorator
@inline const NR: i32 = ASC_FEATURE_RELAXED_SIMD ? NR_RELAXED : NR_SIMD;
// @ts-ignore: decorator
@inline const KC: i32 = 256; // k per packed block: a panel is KC·NR·4 = 8–12 KiB (L1)
// Rows of A per block, a multiple of MR: MC·KC·4 ≈ 128 KiB (L2).
// @ts-ignore: decorator
@inline const MC: i32 = ASC_FEATURE_RELAXED_SIMD ? 120 : 128;
// Columns per packed block, a multiple of NR: KC·NC·4 ≈ 512 KiB of scratch.
// @ts-ignore: decorator
@inline const NC: i32 = ASC_FEATURE_RELAXED_SIMD ? 504 : 512;
// @ts-ignore: decorator
@inline const GEMM_MIN_M: i32 = 4; // fewer rows of A: one matvec per row (matmul_gemm_min_rows)
// @ts-ignore: decorator
@inline const DOT_MAX_M: i32 = 64; // matmul_nt up to this many rows of A: unpacked dot tiles

/**
 * Rows of A from which matmul_nt / matmul_nn compute as a product rather than one matvec (vecmat)
 * per row: the host estimates a call's cost, and picks its split, by which side it falls on.
 */
export function matmul_gemm_min_rows(): i32 {
  return GEMM_MIN_M;
}

/**
 * The columns of C a split of one product across threads keeps together: chunk edges at
 * multiples of this cut no dot tile (DB), packed panel (NR) or matvec four-row group short, so
 * each element is computed as in one call. A multiple of both builds' tiles, so a product splits
 * the same way whichever build runs.
 */
export function matmul_split_cols(): i32 {
  return lcm(lcm(lcm(NR_SIMD, NR_RELAXED), lcm(DB_SIMD, DB_RELAXED)), 4);
}

function lcm(a: i32, b: i32): i32 {
  let x = a, y = b;
  while (y) { const r = x % y; x = y; y = r; }
  return a / x * b;
}

/** Bytes of scratch that matmul_nt / matmul_nn need in `pack` for these k, n. */
export function matmul_pack_bytes(k: i32, n: i32): i32 {
  if (k <= 0 || n <= 0) return 0;
  const kc = min(k, KC);
  const nc = min((n + NR - 1) / NR * NR, NC);
  return kc * nc * 4;
}

/**
 * C[m, n] = A[m, k] · B[n, k]ᵀ   (B is a weight in Hugging Face [out, in] layout), or
 * C += A · Bᵀ when `acc` (a product summed over column panels of B). `pack` is scratch of
 * matmul_pack_bytes(k, n) bytes.
 */
export function matmul_nt(a: usize, lda: i32, b: usize, ldb: i32, c: usize, ldc: i32,
                          m: i32, k: i32, n: i32, pack: usize, acc: bool): void {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) { if (!acc) zeroRows(c, ldc, m, n); return; }
  if (m < GEMM_MIN_M) {
    for (let i = 0; i < m; i++) {
      matvec(b, ldb, a + <usize>(i * lda) * 4, c + <usize>(i * ldc) * 4, n, k, acc);
    }
    return;
  }
  if (m <= DOT_MAX_M) dotNT(a, lda, b, ldb, c, ldc, m, k, n, acc);
  else gemm(a, lda, b, ldb, c, ldc, m, k, n, pack, true, acc);
}

/** C[m, n] = A[m, k] · B[k, n], or C += A · B when `acc`. `pack` as for matmul_nt. */
export function matmul_nn(a: usize, lda: i32, b: usize, ldb: i32, c: usize, ldc: i32,
                          m: i32, k: i32, n: i32, pack: usize, acc: bool): void {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) { if (!acc) zeroRows(c, ldc, m, n); return; }
  if (m < GEMM_MIN_M) {
    for (let i = 0; i < m; i++) {
      vecmat(a + <usize>(i * lda) * 4, b, ldb, c + <usize>(i * ldc) * 4, k, n, acc);
    }
    return;
  }
  gemm(a, lda, b, ldb, c, ldc, m, k, n, pack, false, acc);
}

function zeroRows(c: usize, ldc: i32, m: i32, n: i32): void {
  for (let i = 0; i < m; i++) memory.fill(c + <usize>(i * ldc) * 4, 0, <usize>n * 4);
}

// @ts-ignore: decorator
@inline function gemm(a: usize, lda: i32, b: usize, ldb: i32, c: usize, ldc: i32,
                      m: i32, k: i32, n: i32, pack: usize, nt: bool, accC: bool): void {
  const mFull = m - m % MR;
  for (let jc = 0; jc < n; jc += NC) {
    const nc = min(NC, n - jc);
    const panels = (nc + NR - 1) / NR;
    for (let pc = 0; pc < k; pc += KC) {
      const kc = min(KC, k - pc);
      if (nt) packNT(b + (<usize>jc * ldb + pc) * 4, ldb, kc, nc, pack);
      else packNN(b + (<usize>pc * ldb + jc) * 4, ldb, kc, nc, pack);
      const acc = accC || pc > 0;
      for (let ic = 0; ic < m; ic += MC) {
        const mc = min(MC, m - ic);
        const icEnd = ic + mc;
        const irFull = min(icEnd, mFull);
        for (let jp = 0; jp < panels; jp++) {
          const j = jc + jp * NR;
          const cols = min(NR, n - j);
          const panel = pack + <usize>(jp * kc * NR) * 4;
          const aCol = a + <usize>pc * 4;
          const cCol = c + <usize>j * 4;
          let ir = ic;
          for (; ir < irFull; ir += MR) {
            tile(MR, aCol + <usize>(ir * lda) * 4, lda, panel, kc, cCol + <usize>(ir * ldc) * 4, ldc, cols, acc);
          }
          const rest = icEnd - ir;
          if (rest == 3) tile(3, aCol + <usize>(ir * lda) * 4, lda, panel, kc, cCol + <usize>(ir * ldc) * 4, ldc, cols, acc);
          else if (rest == 2) tile(2, aCol + <usize>(ir * lda) * 4, lda, panel, kc, cCol + <usize>(ir * ldc) * 4, ldc, cols, acc);
          else if (rest == 1) tile(1, aCol + <usize>(ir * lda) * 4, lda, panel, kc, cCol + <usize>(ir * ldc) * 4, ldc, cols, acc);
        }
      }
    }
  }
}

/**
 * The micro-kernel: C[0..rows, 0..cols) (+)= A[0..rows, 0..kc) · panel, where the panel is
 * kc × NR packed ([kk][0..NR), zero-padded). `rows` is a compile-time constant (1..MR) at each
 * call site, so the unused accumulators fold away.
 */
// @ts-ignore: decorator
@inline function tile(rows: i32, a: usize, lda: i32, panel: usize, kc: i32,
                      c: usize, ldc: i32, cols: i32, acc: bool): void {
  const lda4 = <usize>lda * 4;
  let a0 = a, a1 = a + lda4, a2 = a + lda4 * 2, a3 = a + lda4 * 3;
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c02 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0), c12 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c22 = f32x4.splat(0);
  let c30 = f32x4.splat(0), c31 = f32x4.splat(0), c32 = f32x4.splat(0);
  let p = panel;
  const end = panel + <usize>(kc * NR) * 4;
  while (p < end) {
    const b0 = v128.load(p), b1 = v128.load(p, 16);
    const b2 = NR > 8 ? v128.load(p, 32) : b1;
    let x = v128.load32_splat(a0);
    c00 = madd(x, b0, c00); c01 = madd(x, b1, c01);
    if (NR > 8) c02 = madd(x, b2, c02);
    if (rows > 1) {
      x = v128.load32_splat(a1);
      c10 = madd(x, b0, c10); c11 = madd(x, b1, c11);
      if (NR > 8) c12 = madd(x, b2, c12);
    }
    if (rows > 2) {
      x = v128.load32_splat(a2);
      c20 = madd(x, b0, c20); c21 = madd(x, b1, c21);
      if (NR > 8) c22 = madd(x, b2, c22);
    }
    if (rows > 3) {
      x = v128.load32_splat(a3);
      c30 = madd(x, b0, c30); c31 = madd(x, b1, c31);
      if (NR > 8) c32 = madd(x, b2, c32);
    }
    a0 += 4; a1 += 4; a2 += 4; a3 += 4;
    p += NR * 4;
  }
  const ldc4 = <usize>ldc * 4;
  storeRow(c, c00, c01, c02, cols, acc);
  if (rows > 1) storeRow(c + ldc4, c10, c11, c12, cols, acc);
  if (rows > 2) storeRow(c + ldc4 * 2, c20, c21, c22, cols, acc);
  if (rows > 3) storeRow(c + ldc4 * 3, c30, c31, c32, cols, acc);
}

/** Store (or add into) the first `cols` (1..NR) of one row of a tile. */
// @ts-ignore: decorator
@inline function storeRow(c: usize, v0: v128, v1: v128, v2: v128, cols: i32, acc: bool): void {
  if (cols == NR) {
    if (acc) {
      v0 = f32x4.add(v128.load(c), v0); v1 = f32x4.add(v128.load(c, 16), v1);
      if (NR > 8) v2 = f32x4.add(v128.load(c, 32), v2);
    }
    v128.store(c, v0);
    v128.store(c, v1, 16);
    if (NR > 8) v128.store(c, v2, 32);
  } else {
    storePartial(c, v0, v1, v2, cols, acc);
  }
}

// Not inlined: the n edge is rare, and this keeps it out of the hot loop's code.
function storePartial(c: usize, v0: v128, v1: v128, v2: v128, cols: i32, acc: bool): void {
  while (cols >= 4) {
    if (acc) v0 = f32x4.add(v128.load(c), v0);
    v128.store(c, v0);
    c += 16; cols -= 4; v0 = v1; v1 = v2;
  }
  if (cols > 0) storeLane(c, f32x4.extract_lane(v0, 0), acc);
  if (cols > 1) storeLane(c + 4, f32x4.extract_lane(v0, 1), acc);
  if (cols > 2) storeLane(c + 8, f32x4.extract_lane(v0, 2), acc);
}

// @ts-ignore: decorator
@inline function storeLane(p: usize, x: f32, acc: bool): void {
  store<f32>(p, acc ? load<f32>(p) + x : x);
}

/**
 * Pack B[n, k] (rows j = 0..nc of B, columns 0..kc, stride ldb) as panels for matmul_nt:
 * pack[(jp·kc + kk)·NR + jj] = B[jp·NR + jj, kk], zero where jp·NR + jj ≥ nc.
 * Full panels are transposed 4×4 at a time with shuffles.
 */
function packNT(b: usize, ldb: i32, kc: i32, nc: i32, pack: usize): void {
  const ldb4 = <usize>ldb * 4;
  const kc4 = kc & ~3;
  let dst = pack;
  for (let j = 0; j < nc; j += NR) {
    const r0 = b + <usize>j * ldb4;
    if (nc - j >= NR) {
      // Four rows of B (four columns of the panel) at a time.
      for (let q = 0; q < NR; q += 4) {
        const r = r0 + <usize>q * ldb4;
        const r1 = r + ldb4, r2 = r1 + ldb4, r3 = r2 + ldb4;
        const dq = dst + <usize>q * 4;
        let kk = 0;
        for (; kk < kc4; kk += 4) {
          const o = <usize>kk * 4;
          transpose4(dq + <usize>kk * (NR * 4), v128.load(r + o), v128.load(r1 + o), v128.load(r2 + o), v128.load(r3 + o));
        }
        for (; kk < kc; kk++) {
          const o = <usize>kk * 4;
          const d = dq + <usize>kk * (NR * 4);
          store<f32>(d, load<f32>(r + o)); store<f32>(d, load<f32>(r1 + o), 4);
          store<f32>(d, load<f32>(r2 + o), 8); store<f32>(d, load<f32>(r3 + o), 12);
        }
      }
    } else {
      const cols = nc - j;
      for (let kk = 0; kk < kc; kk++) {
        const d = dst + <usize>kk * (NR * 4);
        for (let jj = 0; jj < NR; jj++) {
          store<f32>(d + <usize>jj * 4, jj < cols ? load<f32>(r0 + <usize>jj * ldb4 + <usize>kk * 4) : 0);
        }
      }
    }
    dst += <usize>(kc * NR) * 4;
  }
}

/** Store the transpose of rows (x, y, z, w) as four vectors NR·4 bytes apart. */
// @ts-ignore: decorator
@inline function transpose4(d: usize, x: v128, y: v128, z: v128, w: v128): void {
  const t0 = v128.shuffle<f32>(x, y, 0, 4, 1, 5); // x0 y0 x1 y1
  const t1 = v128.shuffle<f32>(x, y, 2, 6, 3, 7); // x2 y2 x3 y3
  const t2 = v128.shuffle<f32>(z, w, 0, 4, 1, 5); // z0 w0 z1 w1
  const t3 = v128.shuffle<f32>(z, w, 2, 6, 3, 7); // z2 w2 z3 w3
  v128.store(d, v128.shuffle<f32>(t0, t2, 0, 1, 4, 5));
  v128.store(d, v128.shuffle<f32>(t0, t2, 2, 3, 6, 7), NR * 4);
  v128.store(d, v128.shuffle<f32>(t1, t3, 0, 1, 4, 5), NR * 8);
  v128.store(d, v128.shuffle<f32>(t1, t3, 2, 3, 6, 7), NR * 12);
}


/**
 * Pack B[k, n] (rows 0..kc, columns j = 0..nc, stride ldb) as panels for matmul_nn:
 * pack[(jp·kc + kk)·NR + jj] = B[kk, jp·NR + jj], zero where jp·NR + jj ≥ nc.
 */
function packNN(b: usize, ldb: i32, kc: i32, nc: i32, pack: usize): void {
  const ldb4 = <usize>ldb * 4;
  let dst = pack;
  for (let j = 0; j < nc; j += NR) {
    let src = b + <usize>j * 4;
    const end = dst + <usize>(kc * NR) * 4;
    if (nc - j >= NR) {
      for (; dst < end; dst += NR * 4) {
        v128.store(dst, v128.load(src));
        v128.store(dst, v128.load(src, 16), 16);
        if (NR > 8) v128.store(dst, v128.load(src, 32), 32);
        src += ldb4;
      }
    } else {
      const cols = nc - j;
      for (; dst < end; dst += NR * 4) {
        for (let jj = 0; jj < NR; jj++) {
          store<f32>(dst + <usize>jj * 4, jj < cols ? load<f32>(src + <usize>jj * 4) : 0);
        }
        src += ldb4;
      }
    }
  }
}

// GEMV is bound by the read of W. How fast one core reads depends on how many streams it reads
// and how far apart they are: two streams 2 MiB or more apart read faster than one, and two
// neighbouring rows side by side read much slower than one row at a time. So matvec reads W two
// rows at a time, rows PAIR_BYTES apart (row i with row i + d, in blocks of 2d rows; the rows left
// pair at half their count, or go one at a time when that would put them under PAIR_MIN_BYTES
// apart), each x vector loaded once for both rows from L1. Each row is summed in the same order on
// either path, so its result does not depend on the rows it is computed with (threads split W by
// rows). vecmat reads W one row after another. That holds while the vector fits in L1 next to
// the streams; beyond VEC_L1 floats it would come from L2 on every row, and four rows at a time
// (each vector load shared by four rows) is faster; faster still is not to have such rows: the
// decoder stores every matrix wider than 2048 columns as column panels (src/model/weights.ts) and
// sums their matvecs (`acc`). Also keep the vector at a different offset within 4 KiB than W's
// rows (e.g. 2 KiB apart): at the same offset both compete for the same L1 sets. The loads of x
// are what is left between matvec and a plain read of W, and nothing cheaper replaces them (x
// does not fit in registers; sharing each x load among four streams reads slower).
// @ts-ignore: decorator
@inline const PAIR_BYTES: usize = 2 << 20;
// @ts-ignore: decorator
@inline const PAIR_MIN_BYTES: usize = 512 << 10;
// @ts-ignore: decorator
@inline const VEC_L1: i32 = 4096;

/**
 * Floats of x beyond which matvec and vecmat read four rows at a time (see above): a split of
 * one call keeps every chunk on the side the whole call is on.
 */
export function vec_l1_floats(): i32 {
  return VEC_L1;
}

/** y[n] = W[n, k] · x[k], or y += W · x when `acc`   (decode path: one pass over W's rows). */
export function matvec(w: usize, ldw: i32, x: usize, y: usize, n: i32, k: i32, acc: bool): void {
  if (k <= VEC_L1) matvecRows1(w, ldw, x, y, n, k, acc);
  else matvecRows4(w, ldw, x, y, n, k, acc);
}

/** matvec for k ≤ VEC_L1: pairs of rows far apart (see PAIR_BYTES), then single rows. */
function matvecRows1(w: usize, ldw: i32, x: usize, y: usize, n: i32, k: i32, acc: bool): void {
  const ldw4 = <usize>ldw * 4;
  let i = 0;
  if (ldw4 > 0) {
    let d = <i32>((PAIR_BYTES + ldw4 - 1) / ldw4);
    for (;;) {
      if (n - i < 2 * d) {
        d = (n - i) >> 1;
        if (<usize>d * ldw4 < PAIR_MIN_BYTES) break;
      }
      matvecPairs(w + <usize>i * ldw4, ldw, x, y + <usize>i * 4, d, k, acc);
      i += 2 * d;
    }
  }
  for (; i < n; i++) {
    storeLane(y + <usize>i * 4, rowDot(w + <usize>i * ldw4, x, k), acc);
  }
}

/** W row · x: four accumulators, 16 floats a step (matvecPairs sums in this same order). */
// @ts-ignore: decorator
@inline function rowDot(row: usize, x: usize, k: i32): f32 {
  const o16 = <usize>(k & ~15) * 4;
  const o4 = <usize>(k & ~3) * 4;
  const o1 = <usize>k * 4;
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
  let o: usize = 0;
  for (; o < o16; o += 64) {
    const p = row + o, q = x + o;
    s0 = madd(v128.load(p), v128.load(q), s0);
    s1 = madd(v128.load(p, 16), v128.load(q, 16), s1);
    s2 = madd(v128.load(p, 32), v128.load(q, 32), s2);
    s3 = madd(v128.load(p, 48), v128.load(q, 48), s3);
  }
  for (; o < o4; o += 16) s0 = madd(v128.load(row + o), v128.load(x + o), s0);
  let r = hsum(f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3)));
  for (; o < o1; o += 4) r += load<f32>(row + o) * load<f32>(x + o);
  return r;
}

/** y[j] and y[j + d] for j < d: rows j and j + d of W side by side, each summed as rowDot does. */
export function matvecPairs(w: usize, ldw: i32, x: usize, y: usize, d: i32, k: i32, acc: bool): void {
  const ldw4 = <usize>ldw * 4;
  const far = <usize>d * ldw4;
  const o16 = <usize>(k & ~15) * 4;
  const o4 = <usize>(k & ~3) * 4;
  const o1 = <usize>k * 4;
  let ra = w;
  for (let j = 0; j < d; j++) {
    const rb = ra + far;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
    let o: usize = 0;
    for (; o < o16; o += 64) {
      const q = x + o;
      let v = v128.load(q); a0 = madd(v128.load(ra + o), v, a0); b0 = madd(v128.load(rb + o), v, b0);
      v = v128.load(q, 16); a1 = madd(v128.load(ra + o, 16), v, a1); b1 = madd(v128.load(rb + o, 16), v, b1);
      v = v128.load(q, 32); a2 = madd(v128.load(ra + o, 32), v, a2); b2 = madd(v128.load(rb + o, 32), v, b2);
      v = v128.load(q, 48); a3 = madd(v128.load(ra + o, 48), v, a3); b3 = madd(v128.load(rb + o, 48), v, b3);
    }
    for (; o < o4; o += 16) {
      const v = v128.load(x + o);
      a0 = madd(v128.load(ra + o), v, a0); b0 = madd(v128.load(rb + o), v, b0);
    }
    let sa = hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
    let sb = hsum(f32x4.add(f32x4.add(b0, b1), f32x4.add(b2, b3)));
    for (; o < o1; o += 4) {
      const v = load<f32>(x + o);
      sa += load<f32>(ra + o) * v; sb += load<f32>(rb + o) * v;
    }
    storeLane(y + <usize>j * 4, sa, acc);
    storeLane(y + <usize>(j + d) * 4, sb, acc);
    ra += ldw4;
  }
}

/** matvec four rows at a time (each x vector loaded once for four rows), two accumulators a row. */
function matvecRows4(w: usize, ldw: i32, x: usize, y: usize, n: i32, k: i32, acc: bool): void {
  const ldw4 = <usize>ldw * 4;
  const k8 = k & ~7;
  const k4 = k & ~3;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const w0 = w + <usize>i * ldw4, w1 = w0 + ldw4, w2 = w1 + ldw4, w3 = w2 + ldw4;
    let s00 = f32x4.splat(0), s01 = f32x4.splat(0), s10 = f32x4.splat(0), s11 = f32x4.splat(0);
    let s20 = f32x4.splat(0), s21 = f32x4.splat(0), s30 = f32x4.splat(0), s31 = f32x4.splat(0);
    let o: usize = 0;
    const o8 = <usize>k8 * 4;
    for (; o < o8; o += 32) {
      const x0 = v128.load(x + o), x1 = v128.load(x + o, 16);
      s00 = madd(v128.load(w0 + o), x0, s00); s01 = madd(v128.load(w0 + o, 16), x1, s01);
      s10 = madd(v128.load(w1 + o), x0, s10); s11 = madd(v128.load(w1 + o, 16), x1, s11);
      s20 = madd(v128.load(w2 + o), x0, s20); s21 = madd(v128.load(w2 + o, 16), x1, s21);
      s30 = madd(v128.load(w3 + o), x0, s30); s31 = madd(v128.load(w3 + o, 16), x1, s31);
    }
    if (k4 > k8) {
      const x0 = v128.load(x + o);
      s00 = madd(v128.load(w0 + o), x0, s00);
      s10 = madd(v128.load(w1 + o), x0, s10);
      s20 = madd(v128.load(w2 + o), x0, s20);
      s30 = madd(v128.load(w3 + o), x0, s30);
    }
    let r0 = hsum(f32x4.add(s00, s01)), r1 = hsum(f32x4.add(s10, s11));
    let r2 = hsum(f32x4.add(s20, s21)), r3 = hsum(f32x4.add(s30, s31));
    for (let kk = k4; kk < k; kk++) {
      const o = <usize>kk * 4;
      const xv = load<f32>(x + o);
      r0 += load<f32>(w0 + o) * xv; r1 += load<f32>(w1 + o) * xv;
      r2 += load<f32>(w2 + o) * xv; r3 += load<f32>(w3 + o) * xv;
    }
    const yp = y + <usize>i * 4;
    storeLane(yp, r0, acc); storeLane(yp + 4, r1, acc); storeLane(yp + 8, r2, acc); storeLane(yp + 12, r3, acc);
  }
  if (i < n) matvecRows1(w + <usize>i * ldw4, ldw, x, y + <usize>i * 4, n - i, k, acc);
}

/** y[n] = x[k] · W[k, n], or y += x · W when `acc`   (transposed product: one pass over W's rows). */
export function vecmat(x: usize, w: usize, ldw: i32, y: usize, k: i32, n: i32, acc: bool): void {
  if (n <= 0) return;
  if (k <= 0) { if (!acc) memory.fill(y, 0, <usize>n * 4); return; }
  if (n <= VEC_L1) {
    vecmatRow(load<f32>(x), w, y, n, acc);
    for (let kk = 1; kk < k; kk++) vecmatRow(load<f32>(x + <usize>kk * 4), w + <usize>kk * ldw * 4, y, n, true);
  } else {
    vecmatRows4(x, w, ldw, y, k, n, acc);
  }
}

/** y (+)= xs · row, over n floats: one row of vecmat. */
// @ts-ignore: decorator
@inline function vecmatRow(xs: f32, row: usize, y: usize, n: i32, acc: bool): void {
  const xv = f32x4.splat(xs);
  const o16 = <usize>(n & ~15) * 4;
  const o4 = <usize>(n & ~3) * 4;
  const o1 = <usize>n * 4;
  let o: usize = 0;
  if (acc) {
    for (; o < o16; o += 64) {
      const p = row + o, q = y + o;
      v128.store(q, madd(v128.load(p), xv, v128.load(q)));
      v128.store(q, madd(v128.load(p, 16), xv, v128.load(q, 16)), 16);
      v128.store(q, madd(v128.load(p, 32), xv, v128.load(q, 32)), 32);
      v128.store(q, madd(v128.load(p, 48), xv, v128.load(q, 48)), 48);
    }
    for (; o < o4; o += 16) v128.store(y + o, madd(v128.load(row + o), xv, v128.load(y + o)));
    for (; o < o1; o += 4) store<f32>(y + o, load<f32>(y + o) + xs * load<f32>(row + o));
  } else {
    for (; o < o4; o += 16) v128.store(y + o, f32x4.mul(v128.load(row + o), xv));
    for (; o < o1; o += 4) store<f32>(y + o, xs * load<f32>(row + o));
  }
}

/** vecmat four rows of W at a time: y[j..j+4) += x[kk]·W[kk, j..] + … + x[kk+3]·W[kk+3, j..]. */
function vecmatRows4(x: usize, w: usize, ldw: i32, y: usize, k: i32, n: i32, acc: bool): void {
  const ldw4 = <usize>ldw * 4;
  const yEnd4 = y + <usize>(n & ~3) * 4;
  const yEnd = y + <usize>n * 4;
  if (!acc) memory.fill(y, 0, <usize>n * 4);
  let kk = 0;
  for (; kk + 4 <= k; kk += 4) {
    const w0 = w + <usize>kk * ldw4, w1 = w0 + ldw4, w2 = w1 + ldw4, w3 = w2 + ldw4;
    const xp = x + <usize>kk * 4;
    const x0 = v128.load32_splat(xp), x1 = v128.load32_splat(xp, 4);
    const x2 = v128.load32_splat(xp, 8), x3 = v128.load32_splat(xp, 12);
    let o: usize = 0;
    let yp = y;
    for (; yp < yEnd4; yp += 16) {
      let s = madd(v128.load(w0 + o), x0, v128.load(yp));
      s = madd(v128.load(w1 + o), x1, s);
      s = madd(v128.load(w2 + o), x2, s);
      s = madd(v128.load(w3 + o), x3, s);
      v128.store(yp, s);
      o += 16;
    }
    const xs0 = load<f32>(xp), xs1 = load<f32>(xp, 4), xs2 = load<f32>(xp, 8), xs3 = load<f32>(xp, 12);
    for (; yp < yEnd; yp += 4) {
      store<f32>(yp, load<f32>(yp) + xs0 * load<f32>(w0 + o) + xs1 * load<f32>(w1 + o) +
        xs2 * load<f32>(w2 + o) + xs3 * load<f32>(w3 + o));
      o += 4;
    }
  }
  for (; kk < k; kk++) vecmatRow(load<f32>(x + <usize>kk * 4), w + <usize>kk * ldw4, y, n, true);
}


// Decode's per-head products (absorbed MLA: q̃_h = q_h^C · W_UK_h, o_h = W_UV_h · õ_h) are many
// small products, one short stream each when run one by one. Read two at a time, heads h and
// h + H/2 (far apart in the decoder's layout), they read as two streams, which is faster. matvec
// pairs share x and so run four accumulators a row; here each row has its own x, and two
// accumulators a row keep the loop within V8's registers.

/**
 * For i < count: y_i = W_i · x_i (W_i [n, k]) and, when far > 0, also item i + far, the two read
 * side by side; item j is at w + j·wInc, x + j·xInc, y + j·yInc (bytes). y (+)= as matvec.
 * Each row is summed in the same order whether it is read alone or beside its partner.
 */
export function matvec_batch(w: usize, ldw: i32, wInc: usize, x: usize, xInc: usize, y: usize, yInc: usize,
                             n: i32, k: i32, count: i32, far: i32, acc: bool): void {
  const ldw4 = <usize>ldw * 4;
  const paired = far > 0 && k <= VEC_L1 && <usize>far * wInc >= PAIR_MIN_BYTES;
  for (let i = 0; i < count; i++) {
    const wa = w + <usize>i * wInc, xa = x + <usize>i * xInc, ya = y + <usize>i * yInc;
    const wb = wa + <usize>far * wInc, xb = xa + <usize>far * xInc, yb = ya + <usize>far * yInc;
    if (k > VEC_L1) { // four-row streaming, as matvec
      matvecRows4(wa, ldw, xa, ya, n, k, acc);
      if (far > 0) matvecRows4(wb, ldw, xb, yb, n, k, acc);
      continue;
    }
    for (let r = 0; r < n; r++) {
      const ra = wa + <usize>r * ldw4, rb = wb + <usize>r * ldw4;
      if (paired) {
        rowDotTwo(ra, xa, ya + <usize>r * 4, rb, xb, yb + <usize>r * 4, k, acc);
      } else {
        storeLane(ya + <usize>r * 4, rowDot2(ra, xa, k), acc);
        if (far > 0) storeLane(yb + <usize>r * 4, rowDot2(rb, xb, k), acc);
      }
    }
  }
}

/** row · x with two accumulators, 8 floats a step (rowDotTwo sums in this same order). */
// @ts-ignore: decorator
@inline function rowDot2(row: usize, x: usize, k: i32): f32 {
  const o8 = <usize>(k & ~7) * 4;
  const o4 = <usize>(k & ~3) * 4;
  const o1 = <usize>k * 4;
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0);
  let o: usize = 0;
  for (; o < o8; o += 32) {
    s0 = madd(v128.load(row + o), v128.load(x + o), s0);
    s1 = madd(v128.load(row + o, 16), v128.load(x + o, 16), s1);
  }
  if (o < o4) s0 = madd(v128.load(row + o), v128.load(x + o), s0);
  let r = hsum(f32x4.add(s0, s1));
  for (o = o4; o < o1; o += 4) r += load<f32>(row + o) * load<f32>(x + o);
  return r;
}

/** Two rows with their own vectors side by side, each summed as rowDot2 does. */
// @ts-ignore: decorator
@inline function rowDotTwo(ra: usize, xa: usize, ya: usize, rb: usize, xb: usize, yb: usize, k: i32, acc: bool): void {
  const o8 = <usize>(k & ~7) * 4;
  const o4 = <usize>(k & ~3) * 4;
  const o1 = <usize>k * 4;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
  let o: usize = 0;
  for (; o < o8; o += 32) {
    a0 = madd(v128.load(ra + o), v128.load(xa + o), a0); b0 = madd(v128.load(rb + o), v128.load(xb + o), b0);
    a1 = madd(v128.load(ra + o, 16), v128.load(xa + o, 16), a1); b1 = madd(v128.load(rb + o, 16), v128.load(xb + o, 16), b1);
  }
  if (o < o4) {
    a0 = madd(v128.load(ra + o), v128.load(xa + o), a0); b0 = madd(v128.load(rb + o), v128.load(xb + o), b0);
  }
  let sa = hsum(f32x4.add(a0, a1)), sb = hsum(f32x4.add(b0, b1));
  for (o = o4; o < o1; o += 4) {
    sa += load<f32>(ra + o) * load<f32>(xa + o); sb += load<f32>(rb + o) * load<f32>(xb + o);
  }
  storeLane(ya, sa, acc);
  storeLane(yb, sb, acc);
}

/**
 * For i < count: y_i = x_i · W_i (W_i [k, n]) and, when far > 0, also item i + far, the two read
 * side by side, row by row; items and `acc` as matvec_batch. Each y_i is summed as vecmat sums it.
 */
export function vecmat_batch(x: usize, xInc: usize, w: usize, ldw: i32, wInc: usize, y: usize, yInc: usize,
                             k: i32, n: i32, count: i32, far: i32, acc: bool): void {
  const paired = far > 0 && n <= VEC_L1 && k > 0 && <usize>far * wInc >= PAIR_MIN_BYTES;
  const ldw4 = <usize>ldw * 4;
  for (let i = 0; i < count; i++) {
    const xa = x + <usize>i * xInc, wa = w + <usize>i * wInc, ya = y + <usize>i * yInc;
    const xb = xa + <usize>far * xInc, wb = wa + <usize>far * wInc, yb = ya + <usize>far * yInc;
    if (!paired) {
      vecmat(xa, wa, ldw, ya, k, n, acc);
      if (far > 0) vecmat(xb, wb, ldw, yb, k, n, acc);
      continue;
    }
    for (let kk = 0; kk < k; kk++) {
      const o = <usize>kk * 4;
      vecmatRowTwo(load<f32>(xa + o), wa + <usize>kk * ldw4, ya, load<f32>(xb + o), wb + <usize>kk * ldw4, yb, n, acc || kk > 0);
    }
  }
}

/** vecmatRow for two rows with their own scalars and outputs, side by side. */
// @ts-ignore: decorator
@inline function vecmatRowTwo(xa: f32, ra: usize, ya: usize, xb: f32, rb: usize, yb: usize, n: i32, acc: bool): void {
  const va = f32x4.splat(xa), vb = f32x4.splat(xb);
  const o8 = <usize>(n & ~7) * 4;
  const o4 = <usize>(n & ~3) * 4;
  const o1 = <usize>n * 4;
  let o: usize = 0;
  if (acc) {
    for (; o < o8; o += 32) {
      v128.store(ya + o, madd(v128.load(ra + o), va, v128.load(ya + o)));
      v128.store(yb + o, madd(v128.load(rb + o), vb, v128.load(yb + o)));
      v128.store(ya + o, madd(v128.load(ra + o, 16), va, v128.load(ya + o, 16)), 16);
      v128.store(yb + o, madd(v128.load(rb + o, 16), vb, v128.load(yb + o, 16)), 16);
    }
    if (o < o4) {
      v128.store(ya + o, madd(v128.load(ra + o), va, v128.load(ya + o)));
      v128.store(yb + o, madd(v128.load(rb + o), vb, v128.load(yb + o)));
    }
    for (o = o4; o < o1; o += 4) {
      store<f32>(ya + o, load<f32>(ya + o) + xa * load<f32>(ra + o));
      store<f32>(yb + o, load<f32>(yb + o) + xb * load<f32>(rb + o));
    }
  } else {
    for (; o < o4; o += 16) {
      v128.store(ya + o, f32x4.mul(v128.load(ra + o), va));
      v128.store(yb + o, f32x4.mul(v128.load(rb + o), vb));
    }
    for (; o < o1; o += 4) {
      store<f32>(ya + o, xa * load<f32>(ra + o));
      store<f32>(yb + o, xb * load<f32>(rb + o));
    }
  }
}

// NT dot tiles: C[i, j] = A row i · B row j, DA rows of A × DB rows of B per tile. Packing B (a
// transpose) costs about as much as computing 10 rows of C, so up to DOT_MAX_M rows the dot
// tiles win: at M = 64 they reached 0.85–0.92 (relaxed) / 0.91–0.93 (plain) of the peak probe
// where the packed kernels reached 0.80–0.84 / 0.87–0.91; the two cross near M = 80–96, and at
// M = 512 the packed kernels lead (0.94 / 0.96 against 0.89 / 0.91).
// @ts-ignore: decorator
@inline const DA: i32 = ASC_FEATURE_RELAXED_SIMD ? 3 : 2;
// @ts-ignore: decorator
@inline const DB_SIMD: i32 = 4;
// @ts-ignore: decorator
@inline const DB_RELAXED: i32 = 3;
// @ts-ignore: decorator
@inline const DB: i32 = ASC_FEATURE_RELAXED_SIMD ? DB_RELAXED : DB_SIMD;
// k per block: DB rows of B (≤ 32 KiB) stay in L1, and A's DOT_MAX_M rows (≤ 512 KiB) in L2.
// @ts-ignore: decorator
@inline const KD: i32 = 2048;

/**
 * C[m, n] (+)= A[m, k] · B[n, k]ᵀ for 1 ≤ m ≤ DOT_MAX_M, k ≥ 1, in k blocks (the first stores
 * unless `accC`, the rest add).
 * Edge tiles (fewer than DA rows or DB columns left) run the full tile with the missing rows'
 * pointers on the last real row, and store only the real results, so each result is computed the
 * same way wherever its tile starts.
 */
function dotNT(a: usize, lda: i32, b: usize, ldb: i32, c: usize, ldc: i32, m: i32, k: i32, n: i32, accC: bool): void {
  for (let pc = 0; pc < k; pc += KD) {
    const kc = min(KD, k - pc);
    const acc = accC || pc > 0;
    for (let j = 0; j < n; j += DB) {
      const cols = min(DB, n - j);
      const bj = b + (<usize>j * ldb + pc) * 4;
      let i = 0;
      let ai = a + <usize>pc * 4, ci = c + <usize>j * 4;
      const aStep = <usize>(DA * lda) * 4, cStep = <usize>(DA * ldc) * 4;
      if (cols == DB) {
        for (; i + DA <= m; i += DA) {
          dotTile(DA, DB, ai, lda, bj, ldb, ci, ldc, kc, acc);
          ai += aStep; ci += cStep;
        }
      }
      for (; i < m; i += DA) {
        dotEdge(min(DA, m - i), cols, ai, lda, bj, ldb, ci, ldc, kc, acc);
        ai += aStep; ci += cStep;
      }
    }
  }
}

// Not inlined: edge tiles are few, and the full tile's code (constant rows and columns) measured
// 2–4% faster than one tile for both.
function dotEdge(rows: i32, cols: i32, a: usize, lda: i32, b: usize, ldb: i32,
                 c: usize, ldc: i32, kc: i32, acc: bool): void {
  dotTile(rows, cols, a, lda, b, ldb, c, ldc, kc, acc);
}

/**
 * One dot-product tile: C[r, c] (+)= A row r · B row c over kc, for r < rows ≤ DA, c < cols ≤ DB.
 * Rows past `rows` / `cols` re-read the last real row and are not stored.
 */
// @ts-ignore: decorator
@inline function dotTile(rows: i32, cols: i32, a: usize, lda: i32, b: usize, ldb: i32,
                         c: usize, ldc: i32, kc: i32, acc: bool): void {
  const lda4 = <usize>lda * 4, ldb4 = <usize>ldb * 4;
  let a0 = a;
  let a1 = rows > 1 ? a0 + lda4 : a0;
  let a2 = rows > 2 ? a1 + lda4 : a1;
  let b0 = b;
  let b1 = cols > 1 ? b0 + ldb4 : b0;
  let b2 = cols > 2 ? b1 + ldb4 : b1;
  let b3 = cols > 3 ? b2 + ldb4 : b2;
  let s00 = f32x4.splat(0), s01 = f32x4.splat(0), s02 = f32x4.splat(0), s03 = f32x4.splat(0);
  let s10 = f32x4.splat(0), s11 = f32x4.splat(0), s12 = f32x4.splat(0), s13 = f32x4.splat(0);
  let s20 = f32x4.splat(0), s21 = f32x4.splat(0), s22 = f32x4.splat(0), s23 = f32x4.splat(0);
  const end = a + <usize>(kc & ~3) * 4;
  while (a0 < end) {
    const x0 = v128.load(a0), x1 = v128.load(a1);
    const x2 = DA > 2 ? v128.load(a2) : x0;
    const y0 = v128.load(b0), y1 = v128.load(b1);
    const y2 = DB > 2 ? v128.load(b2) : y0;
    const y3 = DB > 3 ? v128.load(b3) : y0;
    s00 = madd(x0, y0, s00); s01 = madd(x0, y1, s01);
    if (DB > 2) s02 = madd(x0, y2, s02);
    if (DB > 3) s03 = madd(x0, y3, s03);
    s10 = madd(x1, y0, s10); s11 = madd(x1, y1, s11);
    if (DB > 2) s12 = madd(x1, y2, s12);
    if (DB > 3) s13 = madd(x1, y3, s13);
    if (DA > 2) {
      s20 = madd(x2, y0, s20); s21 = madd(x2, y1, s21);
      if (DB > 2) s22 = madd(x2, y2, s22);
      if (DB > 3) s23 = madd(x2, y3, s23);
    }
    a0 += 16; a1 += 16; a2 += 16;
    b0 += 16; b1 += 16; b2 += 16; b3 += 16;
  }
  // The k tail (kc % 4 values), from where the vector loop stopped.
  const tail = <usize>(kc & 3) * 4;
  const ldc4 = <usize>ldc * 4;
  dotRow(cols, s00, s01, s02, s03, a0, b0, b1, b2, b3, tail, c, acc);
  if (rows > 1) dotRow(cols, s10, s11, s12, s13, a1, b0, b1, b2, b3, tail, c + ldc4, acc);
  if (rows > 2) dotRow(cols, s20, s21, s22, s23, a2, b0, b1, b2, b3, tail, c + ldc4 * 2, acc);
}

/** Finish one row of a dot tile: reduce each accumulator, add the k tail, store (or add into) C. */
// @ts-ignore: decorator
@inline function dotRow(cols: i32, s0: v128, s1: v128, s2: v128, s3: v128, a: usize,
                        b0: usize, b1: usize, b2: usize, b3: usize, tail: usize, c: usize, acc: bool): void {
  storeLane(c, hsum(s0) + dotTail(a, b0, tail), acc);
  if (cols > 1) storeLane(c + 4, hsum(s1) + dotTail(a, b1, tail), acc);
  if (cols > 2) storeLane(c + 8, hsum(s2) + dotTail(a, b2, tail), acc);
  if (cols > 3) storeLane(c + 12, hsum(s3) + dotTail(a, b3, tail), acc);
}

/** Σ a[o]·b[o] over the last `tail` bytes (0–3 floats). */
// @ts-ignore: decorator
@inline function dotTail(a: usize, b: usize, tail: usize): f32 {
  let r: f32 = 0;
  for (let o: usize = 0; o < tail; o += 4) r += load<f32>(a + o) * load<f32>(b + o);
  return r;
}
