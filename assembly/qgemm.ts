// Prefill products with q8 / q4 weights (quant.ts formats) as a packed, register-blocked GEMM:
// C[m, n] = A · Wᵀ, A quantised by quantize_q8_act (int8 per block of 32, one f32 scale each).
//
// For each panel of NR = 8 weight rows (columns of C) the codes are widened once to i16 —
// q4 as q − 8 — and packed in k pairs: pair p of the panel is 32 bytes, [column c: w[c, 2p],
// w[c, 2p + 1]] for c = 0..7, with the panel's scales as [block][8] f32 after the codes. Every
// activation row then runs against the packed panel (from L1/L2) instead of re-widening the row
// per activation row as matmul_nt_q8/q4 do. The activations too are widened to i16 once per
// call (per MC rows: larger m packs the panels again per block), into the scratch after the
// panel, in groups of MR rows with the group's rows side by side per k pair ([pair][row] i32),
// so a broadcast is one v128.load32_splat at a constant offset. The micro-kernel, MR = 4 rows ×
// 8 columns: per k pair two panel loads, then per row one broadcast and two i32x4.dot_i16x8_s
// (pmaddwd: 8 multiply-adds each) + i32x4.add into i32 accumulators (8 registers; one k pair a
// loop turn, since V8 hoists a second pair's loads and spills). After each block of 32 the exact
// block sums become f32 and are added as acc += f32(Σ) · (d_w·d_x); those f32 accumulators live
// in scratch (touched once a block), the same operations in the same order as in registers.
//
// The relaxed build runs q4 on i16x8.relaxed_dot_i8x16_i7x16_s (pmaddubsw) instead, with the
// unbiased nibble q (0..15) as its 7-bit operand and the activation as the signed one: the panel
// keeps the nibbles as bytes in k quads (quad t of a block is 32 bytes, [column c: q[c, 4t ..
// 4t + 3]] for c = 0..7), and per quad one activation quad broadcast (v128.load32_splat) makes
// 32 multiply-adds of a row in one pmaddubsw + one i16 add per 4 columns. The i16 sums hold a whole
// block (8 quads · 2·15·127 < 2¹⁵) and widen once; Σ(q − 8)·x = Σ q·x − 8·Σ x, with Σ x taken
// once per row and block. 4 rows × 8 columns: 8 i16 accumulators, the f32 ones spill at most.
// q8 has no 7-bit operand without rounding the activations to 7 bits (which doubles their error,
// beyond the narrow-weights tests' bounds) or splitting one operand (as many ops as pmaddwd), so
// it stays on the i16 path in both builds. Not i32x4.relaxed_dot_i8x16_i7x16_add_s: Node 20
// miscompiles it on x64 (see quant.ts).
// Each output's arithmetic depends on its column and row alone (not on the tile or chunk it
// falls in), so a split of the columns at multiples of NR gives the one-thread bits.
import { madd, NIBBLES8 } from "./simd";
import { kquantBlockBytes, superBlockCodes } from "./kquants";

// @ts-ignore: decorator
@inline const NR: i32 = 8;
// @ts-ignore: decorator
@inline const RELAXED: bool = ASC_FEATURE_RELAXED_SIMD;
// @ts-ignore: decorator
@inline const MR: i32 = 4;
// Activation rows widened to i16 at a time (the panels are packed once per such block).
// @ts-ignore: decorator
@inline const MC: i32 = 128;
// Rows of the relaxed q4 tile.
// @ts-ignore: decorator
@inline const MR_NIBBLES: i32 = 4;

/**
 * Bytes of `pack` scratch qgemm_q8 / qgemm_q4 / qgemm_kq need for rows of k (a multiple of 32): a
 * panel, its scales, a tile's f32 sums, MC widened rows; for qgemm_kq also the panel's offsets, MC
 * rows' block sums and NR super-blocks of codes.
 */
export function qgemm_pack_bytes(k: i32): i32 {
  const kk = max(k, 0), nb = kk >> 5;
  return kk * NR * 2 + nb * NR * 4 + MR * NR * 4 + MC * kk * 2 + nb * NR * 4 + MC * nb * 4 + NR * 256 * 2;
}

/** Columns of C a split of qgemm across threads keeps together (one packed panel). */
export function qgemm_split_cols(): i32 {
  return NR;
}

/**
 * C[m, n] = A · Wᵀ, A quantised rows (aq: m rows of k int8, ad: m rows of k/32 f32), W q8 (wq: n
 * rows of k int8, wd: [n, k/32] f32), C f32 (stride ldc); k a multiple of 32; `pack` scratch of
 * qgemm_pack_bytes(k) bytes.
 */
export function qgemm_q8(aq: usize, ad: usize, wq: usize, wd: usize, c: usize, ldc: i32,
                         m: i32, k: i32, n: i32, pack: usize): void {
  gemm(false, -1, aq, ad, wq, wd, c, ldc, m, k, n, pack);
}

/** As qgemm_q8 with q4 weights (wq: n rows of k/2 bytes, quant.ts's nibble order). */
export function qgemm_q4(aq: usize, ad: usize, wq: usize, wd: usize, c: usize, ldc: i32,
                         m: i32, k: i32, n: i32, pack: usize): void {
  gemm(true, -1, aq, ad, wq, wd, c, ldc, m, k, n, pack);
}

/**
 * C[m, n] = A · Wᵀ, A quantised rows as for qgemm_q8, W K-quant rows (fmt as kquants.ts numbers
 * them: Q4_K 0, Q6_K 1, Q5_K 2; k a multiple of 256). Each panel's super-blocks become i16 codes
 * with their sub-block scales folded in (superBlockCodes), run by the i16 tile as q8's codes are,
 * each block scaled by its super-block's d; Q4_K's and Q5_K's −dmin·m per block then meet each
 * activation row's d_x·Σx of that block (the i32 sums are exact: |code| ≤ 4096).
 */
export function qgemm_kq(fmt: i32, aq: usize, ad: usize, w: usize, c: usize, ldc: i32,
                         m: i32, k: i32, n: i32, pack: usize): void {
  if (k & 255) return;
  gemm(false, fmt, aq, ad, w, 0, c, ldc, m, k, n, pack);
}

// Not inlined: the formats share one copy of the i16 tiles.
function gemm(q4: bool, kq: i32, aq: usize, ad: usize, wq: usize, wd: usize, c: usize, ldc: i32,
              m: i32, k: i32, n: i32, pack: usize): void {
  if (m <= 0 || n <= 0 || k < 32) return;
  const nb = k >> 5;
  const uk = <usize>k, sBytes = <usize>nb * 4;
  const rowBytes: usize = kq >= 0 ? (uk >> 8) * kquantBlockBytes(kq) : q4 ? uk >> 1 : uk;
  const cStride = <usize>ldc * 4;
  if (RELAXED && q4) { // q4 runs on the nibbles there, the activations as they are
    const scales = pack + uk * NR;
    const mFull = m - m % MR_NIBBLES;
    for (let j = 0; j < n; j += NR) {
      const cols = min(NR, n - j);
      packPanel(q4, true, wq + <usize>j * rowBytes, rowBytes, wd + <usize>j * sBytes, sBytes, cols, nb, pack, scales);
      const cj = c + <usize>j * 4;
      let i = 0;
      for (; i < mFull; i += MR_NIBBLES) tileNibbles(MR_NIBBLES, aq + <usize>i * uk, uk, ad + <usize>i * sBytes, sBytes, pack, scales, nb, cj + <usize>i * cStride, cStride, cols);
      for (; i < m; i++) tileNibbles(1, aq + <usize>i * uk, uk, ad + <usize>i * sBytes, sBytes, pack, scales, nb, cj + <usize>i * cStride, cStride, cols);
    }
    return;
  }
  const scales = pack + uk * NR * 2;
  const acc = scales + sBytes * NR, wide = acc + MR * NR * 4;
  const offsets = wide + <usize>MC * uk * 2, sums = offsets + sBytes * NR, codes = sums + <usize>MC * sBytes;
  const mins = kq >= 0 && kq != KQ_Q6K;
  for (let i0 = 0; i0 < m; i0 += MC) {
    const rows = min(MC, m - i0), mFull = rows - rows % MR, tail = <usize>(rows - mFull);
    const a0 = ad + <usize>i0 * sBytes, c0 = c + <usize>i0 * cStride;
    widenRows(aq + <usize>i0 * uk, uk, k, rows, wide);
    if (mins) blockSums(aq + <usize>i0 * uk, a0, k, rows, sums);
    for (let j = 0; j < n; j += NR) {
      const cols = min(NR, n - j);
      if (kq >= 0) packSuperBlocks(kq, wq + <usize>j * rowBytes, rowBytes, cols, nb, pack, scales, offsets, codes);
      else packPanel(q4, false, wq + <usize>j * rowBytes, rowBytes, wd + <usize>j * sBytes, sBytes, cols, nb, pack, scales);
      const cj = c0 + <usize>j * 4;
      let i = 0;
      for (; i < mFull; i += MR) {
        const x = wide + <usize>i * uk * 2, d = a0 + <usize>i * sBytes, ci = cj + <usize>i * cStride, si = sums + <usize>i * sBytes;
        if (mins) tile16(MR, true, x, MR * 4, d, sBytes, pack, scales, offsets, si, nb, ci, cStride, cols, acc);
        else tile16(MR, false, x, MR * 4, d, sBytes, pack, scales, 0, 0, nb, ci, cStride, cols, acc);
      }
      // The last group's rows, one at a time (pairs tail·4 bytes apart).
      for (let r = 0; i < rows; i++, r++) {
        const x = wide + <usize>mFull * uk * 2 + <usize>r * 4, d = a0 + <usize>i * sBytes, ci = cj + <usize>i * cStride, si = sums + <usize>i * sBytes;
        if (mins) tile16(1, true, x, tail * 4, d, sBytes, pack, scales, offsets, si, nb, ci, cStride, cols, acc);
        else tile16(1, false, x, tail * 4, d, sBytes, pack, scales, 0, 0, nb, ci, cStride, cols, acc);
      }
    }
  }
}

// @ts-ignore: decorator
@inline const KQ_Q6K: i32 = 1;

/** d_x·Σx of each block of 32 of `rows` quantised rows (aq: k int8 a row; ad: k/32 scales a row) → sums[row][block]. */
function blockSums(aq: usize, ad: usize, k: i32, rows: i32, sums: usize): void {
  const nb = k >> 5;
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const a = aq + (<usize>r * <usize>nb + <usize>b) * 32;
      let s = i32x4.extadd_pairwise_i16x8_s(i16x8.add(i16x8.extadd_pairwise_i8x16_s(v128.load(a)), i16x8.extadd_pairwise_i8x16_s(v128.load(a, 16))));
      s = i32x4.add(s, v128.shuffle<i32>(s, s, 2, 3, 0, 1));
      const t = i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1);
      const at = (<usize>r * <usize>nb + <usize>b) * 4;
      store<f32>(sums + at, load<f32>(ad + at) * <f32>t);
    }
  }
}

/**
 * Pack `cols` (≤ NR) K-quant rows (rowBytes apart) into the panel as packPanel packs q8's, their
 * codes made by superBlockCodes (NR super-blocks at a time into `codes`), each block's scale the
 * super-block's d; offsets [block][NR] get each block's −dmin·m. Missing columns repeat the last row.
 */
function packSuperBlocks(kq: i32, w: usize, rowBytes: usize, cols: i32, nb: i32, panel: usize, scales: usize,
                         offsets: usize, codes: usize): void {
  const last = <usize>(cols - 1), sbBytes = kquantBlockBytes(kq);
  for (let sb = 0; sb < nb >> 3; sb++) {
    const usb = <usize>sb;
    for (let c: usize = 0; c < <usize>NR; c++) {
      const d = superBlockCodes(kq, w + min(c, last) * rowBytes + usb * sbBytes, codes + c * 512, offsets + (usb * 8 * NR + c) * 4, NR * 4);
      for (let b: usize = 0; b < 8; b++) store<f32>(scales + ((usb * 8 + b) * NR + c) * 4, d);
    }
    // Column g + q's codes kk … kk + 7 (four k pairs) to pairs (256·sb + kk)/2 … of the panel.
    for (let g: usize = 0; g < <usize>NR; g += 4) {
      const src = codes + g * 512;
      for (let kk: usize = 0; kk < 256; kk += 8) {
        transposeStore(panel + ((usb * 256 + kk) >> 1) * 32 + g * 4, v128.load(src + kk * 2), v128.load(src + 512 + kk * 2),
          v128.load(src + 1024 + kk * 2), v128.load(src + 1536 + kk * 2));
      }
    }
  }
}

/** acc + x·q over one quad: the pair sums of four columns (column c in bytes 4c .. 4c + 3), i16. */
// @ts-ignore: decorator
@inline function dotQuad(acc: v128, x: v128, q: v128): v128 {
  return i16x8.add(acc, i16x8.relaxed_dot_i8x16_i7x16_s(x, q));
}

/** 8·Σ x over one block of 32 int8 activations, in every lane (i32). */
// @ts-ignore: decorator
@inline function eightSum(a: usize): v128 {
  let s = i32x4.extadd_pairwise_i16x8_s(i16x8.add(i16x8.extadd_pairwise_i8x16_s(v128.load(a)),
    i16x8.extadd_pairwise_i8x16_s(v128.load(a, 16))));
  s = i32x4.add(s, v128.shuffle<i32>(s, s, 2, 3, 0, 1));
  return i32x4.shl(i32x4.add(s, v128.shuffle<i32>(s, s, 1, 0, 3, 2)), 3);
}

/** f + f32(Σ q·x − 8·Σ x) · (d_w·d_x) for one row's block, h its i16 pair sums. */
// @ts-ignore: decorator
@inline function blockNibbles(f: v128, h: v128, corr: v128, sw: v128, dx: v128): v128 {
  return madd(f32x4.convert_i32x4_s(i32x4.sub(i32x4.extadd_pairwise_i16x8_s(h), corr)), f32x4.mul(sw, dx), f);
}

/**
 * The relaxed build's q4 micro-kernel: rows (1..MR_NIBBLES, a constant at each call site) of A
 * against the nibble panel, storing the first `cols` columns of each row.
 */
// @ts-ignore: decorator
@inline function tileNibbles(rows: i32, a: usize, aStride: usize, ad: usize, adStride: usize, panel: usize, scales: usize,
                             nb: i32, c: usize, cStride: usize, cols: i32): void {
  const zero = i16x8.splat(0);
  let f00 = f32x4.splat(0), f01 = f32x4.splat(0), f10 = f32x4.splat(0), f11 = f32x4.splat(0);
  let f20 = f32x4.splat(0), f21 = f32x4.splat(0), f30 = f32x4.splat(0), f31 = f32x4.splat(0);
  let a0 = a, d0 = ad;
  let pw = panel, ps = scales;
  for (let b = 0; b < nb; b++) {
    let h00 = zero, h01 = zero, h10 = zero, h11 = zero, h20 = zero, h21 = zero, h30 = zero, h31 = zero;
    const end = pw + 8 * 32;
    let x0 = a0;
    while (pw < end) {
      const q0 = v128.load(pw), q1 = v128.load(pw, 16);
      let x = v128.load32_splat(x0);
      h00 = dotQuad(h00, x, q0); h01 = dotQuad(h01, x, q1);
      if (rows > 1) { x = v128.load32_splat(x0 + aStride); h10 = dotQuad(h10, x, q0); h11 = dotQuad(h11, x, q1); }
      if (rows > 2) { x = v128.load32_splat(x0 + 2 * aStride); h20 = dotQuad(h20, x, q0); h21 = dotQuad(h21, x, q1); }
      if (rows > 3) { x = v128.load32_splat(x0 + 3 * aStride); h30 = dotQuad(h30, x, q0); h31 = dotQuad(h31, x, q1); }
      x0 += 4; pw += 32;
    }
    const s0 = v128.load(ps), s1 = v128.load(ps, 16);
    let corr = eightSum(a0), dx = f32x4.splat(load<f32>(d0));
    f00 = blockNibbles(f00, h00, corr, s0, dx); f01 = blockNibbles(f01, h01, corr, s1, dx);
    if (rows > 1) {
      corr = eightSum(a0 + aStride); dx = f32x4.splat(load<f32>(d0 + adStride));
      f10 = blockNibbles(f10, h10, corr, s0, dx); f11 = blockNibbles(f11, h11, corr, s1, dx);
    }
    if (rows > 2) {
      corr = eightSum(a0 + 2 * aStride); dx = f32x4.splat(load<f32>(d0 + 2 * adStride));
      f20 = blockNibbles(f20, h20, corr, s0, dx); f21 = blockNibbles(f21, h21, corr, s1, dx);
    }
    if (rows > 3) {
      corr = eightSum(a0 + 3 * aStride); dx = f32x4.splat(load<f32>(d0 + 3 * adStride));
      f30 = blockNibbles(f30, h30, corr, s0, dx); f31 = blockNibbles(f31, h31, corr, s1, dx);
    }
    a0 += 32; ps += 32; d0 += 4;
  }
  storeRow(c, f00, f01, cols);
  if (rows > 1) storeRow(c + cStride, f10, f11, cols);
  if (rows > 2) storeRow(c + 2 * cStride, f20, f21, cols);
  if (rows > 3) storeRow(c + 3 * cStride, f30, f31, cols);
}

/**
 * Widen `rows` activation rows (k int8 each, aStride apart) to i16 at `wide`, in groups of MR rows
 * (the last group may be shorter): group g's k pair p of its row r at group + (p·g_rows + r)·4, so a
 * tile finds its rows' pairs side by side.
 */
function widenRows(a: usize, aStride: usize, k: i32, rows: i32, wide: usize): void {
  const uk = <usize>k;
  for (let i = 0; i < rows; i += MR) {
    const g = <usize>min(MR, rows - i), step = g * 4;
    const dst = wide + <usize>i * uk * 2;
    for (let r: usize = 0; r < g; r++) {
      const src = a + (<usize>i + r) * aStride;
      let d = dst + r * 4;
      for (let kk: usize = 0; kk < uk; kk += 8) {
        const v = v128.load8x8_s(src + kk); // four k pairs of this row, as i16
        v128.store32_lane(d, v, 0);
        v128.store32_lane(d + step, v, 1);
        v128.store32_lane(d + 2 * step, v, 2);
        v128.store32_lane(d + 3 * step, v, 3);
        d += 4 * step;
      }
    }
  }
}

/**
 * The f32 accumulators of one row, at acc: acc += f32(Σ) · (d_w·d_x) per half, d_x at d; with
 * `mins`, then acc += o · (d_x·Σx), the block's negated offsets o0, o1 and the row's sum at sum.
 */
// @ts-ignore: decorator
@inline function blockRow(mins: bool, acc: usize, i0: v128, i1: v128, s0: v128, s1: v128, d: usize, o0: v128, o1: v128, sum: usize): void {
  const dx = f32x4.splat(load<f32>(d));
  let a0 = madd(f32x4.convert_i32x4_s(i0), f32x4.mul(s0, dx), v128.load(acc));
  let a1 = madd(f32x4.convert_i32x4_s(i1), f32x4.mul(s1, dx), v128.load(acc, 16));
  if (mins) {
    const sx = f32x4.splat(load<f32>(sum));
    a0 = madd(o0, sx, a0); a1 = madd(o1, sx, a1);
  }
  v128.store(acc, a0);
  v128.store(acc, a1, 16);
}

/**
 * The i16 micro-kernel: rows (1..MR, a constant at each call site) of the widened activations
 * (x: the first row's first pair, `step` bytes from one k pair to the next, rows 4 bytes apart)
 * against the packed panel, storing the first `cols` columns of each row. The i32 sums live in
 * registers, the f32 accumulators in `acc` (rows × 8 f32): they are touched once per block.
 */
// @ts-ignore: decorator
@inline function tile16(rows: i32, mins: bool, x: usize, step: usize, ad: usize, adStride: usize, panel: usize, scales: usize,
                        offsets: usize, sums: usize, nb: i32, c: usize, cStride: usize, cols: i32, acc: usize): void {
  const zero = i32x4.splat(0);
  for (let r = 0; r < rows; r++) {
    v128.store(acc + <usize>r * 32, zero);
    v128.store(acc + <usize>r * 32, zero, 16);
  }
  let d = ad;
  let pw = panel, ps = scales, po = offsets, px = sums;
  for (let b = 0; b < nb; b++) {
    let i00 = zero, i01 = zero, i10 = zero, i11 = zero, i20 = zero, i21 = zero, i30 = zero, i31 = zero;
    const end = pw + 16 * 32;
    while (pw < end) {
      const w0 = v128.load(pw), w1 = v128.load(pw, 16);
      let v = v128.load32_splat(x);
      i00 = i32x4.add(i00, i32x4.dot_i16x8_s(v, w0)); i01 = i32x4.add(i01, i32x4.dot_i16x8_s(v, w1));
      if (rows > 1) { v = v128.load32_splat(x, 4); i10 = i32x4.add(i10, i32x4.dot_i16x8_s(v, w0)); i11 = i32x4.add(i11, i32x4.dot_i16x8_s(v, w1)); }
      if (rows > 2) { v = v128.load32_splat(x, 8); i20 = i32x4.add(i20, i32x4.dot_i16x8_s(v, w0)); i21 = i32x4.add(i21, i32x4.dot_i16x8_s(v, w1)); }
      if (rows > 3) { v = v128.load32_splat(x, 12); i30 = i32x4.add(i30, i32x4.dot_i16x8_s(v, w0)); i31 = i32x4.add(i31, i32x4.dot_i16x8_s(v, w1)); }
      x += step; pw += 32;
    }
    const s0 = v128.load(ps), s1 = v128.load(ps, 16);
    const o0 = mins ? v128.load(po) : s0, o1 = mins ? v128.load(po, 16) : s1;
    blockRow(mins, acc, i00, i01, s0, s1, d, o0, o1, px);
    if (rows > 1) blockRow(mins, acc + 32, i10, i11, s0, s1, d + adStride, o0, o1, px + adStride);
    if (rows > 2) blockRow(mins, acc + 64, i20, i21, s0, s1, d + 2 * adStride, o0, o1, px + 2 * adStride);
    if (rows > 3) blockRow(mins, acc + 96, i30, i31, s0, s1, d + 3 * adStride, o0, o1, px + 3 * adStride);
    ps += 32; d += 4; po += 32; px += 4;
  }
  for (let r = 0; r < rows; r++) {
    const f = acc + <usize>r * 32;
    storeRow(c + <usize>r * cStride, v128.load(f), v128.load(f, 16), cols);
  }
}

// @ts-ignore: decorator
@inline function storeRow(c: usize, v0: v128, v1: v128, cols: i32): void {
  if (cols == NR) {
    v128.store(c, v0);
    v128.store(c, v1, 16);
  } else {
    storePartial(c, v0, v1, cols);
  }
}

// Not inlined: the n edge is rare.
function storePartial(c: usize, v0: v128, v1: v128, cols: i32): void {
  if (cols >= 4) { v128.store(c, v0); c += 16; cols -= 4; v0 = v1; }
  if (cols > 0) store<f32>(c, f32x4.extract_lane(v0, 0));
  if (cols > 1) store<f32>(c, f32x4.extract_lane(v0, 1), 4);
  if (cols > 2) store<f32>(c, f32x4.extract_lane(v0, 2), 8);
}

/**
 * Pack `cols` (≤ NR) weight rows from w (rowBytes apart; scales at wd, sBytes apart) into the
 * panel, column-interleaved: codes as i16 k pairs (q4 as q − 8), or with `nibbles` q4's nibbles
 * (0..15) as bytes in k quads; then the scales as [block][NR]. Missing columns repeat the last
 * real row (computed, never stored).
 */
function packPanel(q4: bool, nibbles: bool, w: usize, rowBytes: usize, wd: usize, sBytes: usize, cols: i32, nb: i32,
                   panel: usize, scales: usize): void {
  const last = <usize>(cols - 1);
  const blockBytes: usize = nibbles ? 8 * 32 : 16 * 32; // one block's codes, 8 columns × 32 k
  const m = RELAXED ? v128.load(NIBBLES8) : i32x4.splat(0); // the nibble mask, loaded once (see there)
  for (let g: usize = 0; g < <usize>NR; g += 4) {
    const r0 = w + min(g, last) * rowBytes, r1 = w + min(g + 1, last) * rowBytes;
    const r2 = w + min(g + 2, last) * rowBytes, r3 = w + min(g + 3, last) * rowBytes;
    let dst = panel + g * 4;
    for (let b = 0; b < nb; b++) {
      if (q4) {
        const o = <usize>b * 16;
        const v0 = v128.load(r0 + o), v1 = v128.load(r1 + o), v2 = v128.load(r2 + o), v3 = v128.load(r3 + o);
        if (RELAXED) { // q4 always runs on nibbles there
          transposeStore(dst, v128.and(v0, m), v128.and(v1, m), v128.and(v2, m), v128.and(v3, m));
          transposeStore(dst + 4 * 32, v128.and(i16x8.shr_u(v0, 4), m), v128.and(i16x8.shr_u(v1, 4), m),
            v128.and(i16x8.shr_u(v2, 4), m), v128.and(i16x8.shr_u(v3, 4), m));
        } else {
          pack16(dst, lowNibbles(v0), lowNibbles(v1), lowNibbles(v2), lowNibbles(v3));
          pack16(dst + 8 * 32, highNibbles(v0), highNibbles(v1), highNibbles(v2), highNibbles(v3));
        }
      } else {
        const o = <usize>b * 32;
        pack16(dst, v128.load(r0 + o), v128.load(r1 + o), v128.load(r2 + o), v128.load(r3 + o));
        pack16(dst + 8 * 32, v128.load(r0 + o, 16), v128.load(r1 + o, 16), v128.load(r2 + o, 16), v128.load(r3 + o, 16));
      }
      dst += blockBytes;
    }
  }
  for (let c = 0; c < NR; c++) {
    const src = wd + min(<usize>c, last) * sBytes;
    for (let b = 0; b < nb; b++) store<f32>(scales + (<usize>b * NR + <usize>c) * 4, load<f32>(src + <usize>b * 4));
  }
}

// @ts-ignore: decorator
@inline function lowNibbles(v: v128): v128 {
  return i8x16.sub(v128.and(v, i8x16.splat(0x0F)), i8x16.splat(8));
}
// @ts-ignore: decorator
@inline function highNibbles(v: v128): v128 {
  return i8x16.sub(v128.and(i16x8.shr_u(v, 4), i8x16.splat(0x0F)), i8x16.splat(8));
}

/**
 * Sixteen int8 codes (k values kk..kk + 15) of four columns → eight k pairs of those columns:
 * pair t of column q at dst + t·32 + q·4 (i16, i16).
 */
// @ts-ignore: decorator
@inline function pack16(dst: usize, c0: v128, c1: v128, c2: v128, c3: v128): void {
  transposeStore(dst, i16x8.extend_low_i8x16_s(c0), i16x8.extend_low_i8x16_s(c1),
    i16x8.extend_low_i8x16_s(c2), i16x8.extend_low_i8x16_s(c3));
  transposeStore(dst + 4 * 32, i16x8.extend_high_i8x16_s(c0), i16x8.extend_high_i8x16_s(c1),
    i16x8.extend_high_i8x16_s(c2), i16x8.extend_high_i8x16_s(c3));
}

/** Rows x, y, z, w of four 32-bit lanes, transposed: lane t of each as one vector at d + t·32. */
// @ts-ignore: decorator
@inline function transposeStore(d: usize, x: v128, y: v128, z: v128, w: v128): void {
  const t0 = v128.shuffle<i32>(x, y, 0, 4, 1, 5);
  const t1 = v128.shuffle<i32>(x, y, 2, 6, 3, 7);
  const t2 = v128.shuffle<i32>(z, w, 0, 4, 1, 5);
  const t3 = v128.shuffle<i32>(z, w, 2, 6, 3, 7);
  v128.store(d, v128.shuffle<i32>(t0, t2, 0, 1, 4, 5));
  v128.store(d, v128.shuffle<i32>(t0, t2, 2, 3, 6, 7), 32);
  v128.store(d, v128.shuffle<i32>(t1, t3, 0, 1, 4, 5), 64);
  v128.store(d, v128.shuffle<i32>(t1, t3, 2, 3, 6, 7), 96);
}

