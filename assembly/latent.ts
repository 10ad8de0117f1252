// The narrow latent cache of absorbed MLA: rows stored as bf16, int8 or int4, and attention that
// reads them as they are, widening in registers, never into a copy of the cache.
//
// Formats (fmt): 1 = bf16, 2 = int8, 3 = int4 (0, f32, is attention.ts's attn_block). A row holds
// one token's [c_kv (dc values) ; k^R (dr values)]:
//   bf16  dc + dr bf16 (u16), padded to 16 bytes.
//   int8  ceil32(dc) int8 codes (zeros past dc), one f32 scale d, the codes' sum (i32), then k^R
//         as dr bf16; padded to 16 bytes. c_kv ≈ code · d, d = max|c_kv| / 127: one scale per row
//         (scripts/cache-grouping.ts measured groups of 32 against it). The sum is what the relaxed
//         build's scores take away for their biased queries, made once here, not at every call.
//   int4  codes as for int8 but 4-bit, d = max|c_kv| / 7, code + 8 (1…15) in a nibble: in each
//         block of 32 values, value j in the low nibble of byte j, value j + 16 in its high nibble
//         (16 bytes a block, padding nibbles 8, i.e. 0); then d, the sum of the codes and k^R.
// k^R stays at 16 bits (bf16) because it carries position: it is rounded, never quantised.
//
// For int8 and int4 the queries are records too (latent_query). Plain build (this paragraph): q̃
// quantised to int8 per query (one f32 scale, stored widened to i16 so the dot products take
// them as they are), then q^R as f32. The relaxed build has 7-bit records and its own loop
// (blockDot, at the end of this file). A score is then an exact integer dot product Σ code_q·code_k, times d_q·d_k, plus the
// f32 dot product with the widened k^R. The values are summed as Σ_j w_j·code_j, w_j = p_j·d_j
// rounded to i16 per query and block of keys (step max w / 32767), two keys at a time by
// i32x4.dot_i16x8_s, exact in i32, scaled into f32 once per block: summing widened f32 codes
// took more instructions than f32 rows (the loop is compute-bound); this takes about half.
// bf16 rows take f32 queries ([q̃ ; q^R], as attn_block's) and are widened in registers.
//
// attn_block_latent has attn_block's online softmax and its tiles (4 queries; keys b and b + h in
// pairs), so that a split by queries in multiples of attn_query_tile, or by segments of keys, gives
// the same numbers as one call. Queries left over (nq mod 4) go one at a time through the same
// per-(query, key) arithmetic.
import { madd, hsum, ONES16, NIBBLES8, EIGHTS8 } from "./simd";
import { softmaxRow, softmaxTile, visible, LATENT_SCRATCH } from "./attention";

// @ts-ignore: decorator
@inline const BF16: i32 = 1;
// @ts-ignore: decorator
@inline const INT8: i32 = 2;
// @ts-ignore: decorator
@inline const INT4: i32 = 3;
// @ts-ignore: decorator
@inline const SUB: i32 = 64;
// @ts-ignore: decorator
@inline const ROW_BYTES: usize = <usize>SUB << 2;

// ---------------------------------------------------------------------------------------------
// Layout

// @ts-ignore: decorator
@inline function ceil32(n: i32): i32 { return (n + 31) & ~31; }
// @ts-ignore: decorator
@inline function ceil16(n: i32): i32 { return (n + 15) & ~15; }

/** Bytes of the codes (int8, int4) or of c_kv (bf16): where the scale (int) or k^R (bf16) starts. */
// @ts-ignore: decorator
@inline function codeBytes(fmt: i32, dc: i32): i32 {
  return fmt == BF16 ? dc << 1 : fmt == INT8 ? ceil32(dc) : ceil32(dc) >> 1;
}

/** Where k^R (dr bf16) starts in a row: after the codes, and for int8/int4 their scale and sum. */
// @ts-ignore: decorator
@inline function ropeAt(fmt: i32, dc: i32): usize {
  return <usize>(codeBytes(fmt, dc) + (fmt == BF16 ? 0 : 8));
}

/** Bytes of one cache row in format fmt (1 bf16, 2 int8, 3 int4), a multiple of 16. */
export function latent_row_bytes(fmt: i32, dc: i32, dr: i32): i32 {
  return ceil16(<i32>ropeAt(fmt, dc) + (dr << 1));
}

/** Bytes of one query record attn_block_latent reads (int8, int4: latent_query's; bf16: f32 [q̃ ; q^R]). */
export function latent_query_bytes(fmt: i32, dc: i32, dr: i32): i32 {
  if (fmt == BF16) return (dc + dr) << 2;
  return ceil16((ASC_FEATURE_RELAXED_SIMD ? ceil32(dc) : ceil32(dc) << 1) + 4 + (dr << 2));
}

// ---------------------------------------------------------------------------------------------
// Rounding

/** f32 → bf16 bits, round to nearest even (finite inputs). */
// @ts-ignore: decorator
@inline function toBf16(x: f32): u16 {
  const u = reinterpret<u32>(x);
  return <u16>((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

// @ts-ignore: decorator
@inline function fromBf16(h: u32): f32 {
  return reinterpret<f32>(h << 16);
}

/** max |x[i]| for i < n (f32 at x). */
function absMax(x: usize, n: i32): f32 {
  let v = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) v = f32x4.max(v, f32x4.abs(v128.load(x + (<usize>i << 2))));
  let m = max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
  for (; i < n; i++) m = max(m, abs(load<f32>(x + (<usize>i << 2))));
  return m;
}

/** x · inv rounded to the nearest integer (ties to even), clamped to ±qmax. */
// @ts-ignore: decorator
@inline function code(x: f32, inv: f32, qmax: f32): i32 {
  return <i32>min(max(nearest(x * inv), -qmax), qmax);
}

/**
 * Write `rows` cache rows in format fmt: row r from the f32 [c_kv (dc) ; k^R (dr)] at
 * src + r·srcStride·4, to dst + r·dstStride bytes (latent_row_bytes apart or more).
 */
export function latent_store(fmt: i32, src: usize, srcStride: i32, rows: i32, dc: i32, dr: i32,
                             dst: usize, dstStride: i32): void {
  const kr = ropeAt(fmt, dc);
  for (let r = 0; r < rows; r++) {
    const x = src + ((<usize>r * <usize>srcStride) << 2);
    const o = dst + <usize>r * <usize>dstStride;
    if (fmt == BF16) {
      for (let i = 0; i < dc; i++) store<u16>(o + (<usize>i << 1), toBf16(load<f32>(x + (<usize>i << 2))));
    } else {
      const qmax: f32 = fmt == INT8 ? 127 : 7;
      const amax = absMax(x, dc);
      const d = amax / qmax, inv: f32 = amax > 0 ? qmax / amax : 0;
      const n = ceil32(dc);
      let sum = 0;
      if (fmt == INT8) {
        for (let i = 0; i < n; i++) {
          const c = i < dc ? code(load<f32>(x + (<usize>i << 2)), inv, qmax) : 0;
          store<i8>(o + <usize>i, <i8>c);
          sum += c;
        }
      } else {
        for (let i = 0; i < n; i += 32) {
          for (let j = 0; j < 16; j++) {
            const a = i + j, b = a + 16;
            const lo = a < dc ? code(load<f32>(x + (<usize>a << 2)), inv, qmax) : 0;
            const hi = b < dc ? code(load<f32>(x + (<usize>b << 2)), inv, qmax) : 0;
            store<u8>(o + <usize>(i >> 1) + <usize>j, <u8>((lo + 8) | ((hi + 8) << 4)));
            sum += lo + hi;
          }
        }
      }
      store<f32>(o + <usize>codeBytes(fmt, dc), d);
      store<i32>(o + <usize>codeBytes(fmt, dc) + 4, sum);
    }
    const xr = x + (<usize>dc << 2);
    for (let i = 0; i < dr; i++) store<u16>(o + kr + (<usize>i << 1), toBf16(load<f32>(xr + (<usize>i << 2))));
  }
}

/** c_kv value i of a row, widened (for latent_widen and the column tails). */
// @ts-ignore: decorator
@inline function latentValue(fmt: i32, row: usize, i: i32, dc: i32): f32 {
  if (fmt == BF16) return fromBf16(<u32>load<u16>(row + (<usize>i << 1)));
  const d = load<f32>(row + <usize>codeBytes(fmt, dc));
  if (fmt == INT8) return <f32>load<i8>(row + <usize>i) * d;
  const w = i & 31, byte = <i32>load<u8>(row + <usize>(((i >> 5) << 4) + (w & 15)));
  return <f32>(((w < 16 ? byte : byte >> 4) & 15) - 8) * d;
}

/**
 * Widen `rows` cache rows (src + r·srcStride bytes) to f32 [c_kv ; k^R] at dst + r·dstStride·4:
 * naive attention expands a block of keys at a time from these.
 */
export function latent_widen(fmt: i32, src: usize, srcStride: i32, rows: i32, dc: i32, dr: i32,
                             dst: usize, dstStride: i32): void {
  const kr = ropeAt(fmt, dc);
  for (let r = 0; r < rows; r++) {
    const row = src + <usize>r * <usize>srcStride;
    const y = dst + ((<usize>r * <usize>dstStride) << 2);
    for (let i = 0; i < dc; i++) store<f32>(y + (<usize>i << 2), latentValue(fmt, row, i, dc));
    for (let i = 0; i < dr; i++) store<f32>(y + (<usize>(dc + i) << 2), fromBf16(<u32>load<u16>(row + kr + (<usize>i << 1))));
  }
}

/**
 * Query records for int8/int4 rows: query r, f32 [q̃ (dc) ; q^R (dr)] at src + r·srcStride·4, to
 * dst + r·dstStride bytes: ceil32(dc) i16 codes of q̃ (d = max|q̃| / 127, zeros past dc), d as
 * f32, then q^R as f32.
 */
export function latent_query(src: usize, srcStride: i32, nq: i32, dc: i32, dr: i32, dst: usize, dstStride: i32): void {
  if (ASC_FEATURE_RELAXED_SIMD) { latentQuery7(src, srcStride, nq, dc, dr, dst, dstStride); return; }
  const n = ceil32(dc);
  for (let r = 0; r < nq; r++) {
    const x = src + ((<usize>r * <usize>srcStride) << 2);
    const o = dst + <usize>r * <usize>dstStride;
    const amax = absMax(x, dc);
    const inv: f32 = amax > 0 ? 127 / amax : 0;
    for (let i = 0; i < n; i++) store<i16>(o + (<usize>i << 1), i < dc ? <i16>code(load<f32>(x + (<usize>i << 2)), inv, 127) : 0);
    store<f32>(o + (<usize>n << 1), amax / 127);
    memory.copy(o + (<usize>n << 1) + 4, x + (<usize>dc << 2), <usize>dr << 2);
  }
}

// ---------------------------------------------------------------------------------------------
// Scores

/**
 * Codes c·16 … c·16 + 15 of an int8 / int4 row as signed int8 lanes. nib, eight: int4's mask and
 * offset, loaded by the caller from NIBBLES8 / EIGHTS8 before its loop (see simd.ts); the high
 * nibbles are shifted as i16 and masked, which needs no constant of its own.
 */
// @ts-ignore: decorator
@inline function codes16(fmt: i32, row: usize, c: i32, nib: v128, eight: v128): v128 {
  if (fmt == INT8) return v128.load(row + (<usize>c << 4));
  const b = v128.load(row + (<usize>(c >> 1) << 4));
  return i8x16.sub(v128.and(c & 1 ? i16x8.shr_u(b, 4) : b, nib), eight);
}

/** Σ of 16 code products: query i16 codes at q (two vectors) · row codes x (int8 lanes). */
// @ts-ignore: decorator
@inline function idot16(q: usize, xl: v128, xh: v128, a: v128): v128 {
  return i32x4.add(a, i32x4.add(i32x4.dot_i16x8_s(v128.load(q), xl), i32x4.dot_i16x8_s(v128.load(q, 16), xh)));
}

// @ts-ignore: decorator
@inline function isum(v: v128): i32 {
  return i32x4.extract_lane(v, 0) + i32x4.extract_lane(v, 1) + i32x4.extract_lane(v, 2) + i32x4.extract_lane(v, 3);
}

/** Eight bf16 → f32 lanes 0–3 (lo) and 4–7 (hi). */
// @ts-ignore: decorator
@inline function bf16Lo(h: v128): v128 {
  return v128.shuffle<i16>(i32x4.splat(0), h, 0, 8, 1, 9, 2, 10, 3, 11);
}
// @ts-ignore: decorator
@inline function bf16Hi(h: v128): v128 {
  return v128.shuffle<i16>(i32x4.splat(0), h, 4, 12, 5, 13, 6, 14, 7, 15);
}

/** f32 q (n values) · bf16 k (n values): 8 at a time into one accumulator, then the tail in order. */
// @ts-ignore: decorator
@inline function dotBf16(q: usize, k: usize, n: i32): f32 {
  let a = f32x4.splat(0);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const h = v128.load(k + (<usize>i << 1)), x = q + (<usize>i << 2);
    a = madd(v128.load(x, 16), bf16Hi(h), madd(v128.load(x), bf16Lo(h), a));
  }
  let s = hsum(a);
  for (; i < n; i++) s += load<f32>(q + (<usize>i << 2)) * fromBf16(<u32>load<u16>(k + (<usize>i << 1)));
  return s;
}

/** Unscaled score of one query record against one row: the arithmetic every path does per pair. */
// @ts-ignore: decorator
@inline function score1(fmt: i32, q: usize, k: usize, dc: i32, dr: i32): f32 {
  if (fmt == BF16) return dotBf16(q, k, dc) + dotBf16(q + (<usize>dc << 2), k + (<usize>dc << 1), dr);
  const n = ceil32(dc), qd = q + (<usize>n << 1);
  const nib = v128.load(NIBBLES8), eight = v128.load(EIGHTS8); // int4's, loaded once (see codes16)
  let a = i32x4.splat(0);
  for (let c = 0; c < (n >> 4); c++) {
    const x = codes16(fmt, k, c, nib, eight);
    a = idot16(q + (<usize>c << 5), i16x8.extend_low_i8x16_s(x), i16x8.extend_high_i8x16_s(x), a);
  }
  const kd = k + <usize>codeBytes(fmt, dc);
  return <f32>isum(a) * (load<f32>(qd) * load<f32>(kd)) + dotBf16(qd + 4, k + ropeAt(fmt, dc), dr);
}

/**
 * Scores of 4 queries (q0 + j·qs) against rows ka and kb, to outA / outB + j·ROW_BYTES. Each row's
 * widened codes (or bf16 values) are shared by the 4 queries and each query's values by the two
 * rows; per (query, row) the arithmetic is score1's, so a key scores the same in any tile.
 */
// @ts-ignore: decorator
@inline function scores4x2(fmt: i32, q0: usize, qs: usize, ka: usize, kb: usize, dc: i32, dr: i32,
                           scale: f32, outA: usize, outB: usize): void {
  if (fmt == BF16) {
    dotsBf16(q0, qs, ka, kb, dc, scale, outA, outB, false);
    dotsBf16(q0 + (<usize>dc << 2), qs, ka + (<usize>dc << 1), kb + (<usize>dc << 1), dr, scale, outA, outB, true);
    return;
  }
  const q1 = q0 + qs, q2 = q1 + qs, q3 = q2 + qs;
  const zero = i32x4.splat(0);
  let a0 = zero, a1 = zero, a2 = zero, a3 = zero, b0 = zero, b1 = zero, b2 = zero, b3 = zero;
  const n = ceil32(dc);
  const nib = v128.load(NIBBLES8), eight = v128.load(EIGHTS8); // int4's, loaded once (see codes16)
  for (let c = 0; c < (n >> 4); c++) {
    const xa = codes16(fmt, ka, c, nib, eight), xb = codes16(fmt, kb, c, nib, eight);
    const al = i16x8.extend_low_i8x16_s(xa), ah = i16x8.extend_high_i8x16_s(xa);
    const bl = i16x8.extend_low_i8x16_s(xb), bh = i16x8.extend_high_i8x16_s(xb);
    const o = <usize>c << 5;
    a0 = idot16(q0 + o, al, ah, a0); b0 = idot16(q0 + o, bl, bh, b0);
    a1 = idot16(q1 + o, al, ah, a1); b1 = idot16(q1 + o, bl, bh, b1);
    a2 = idot16(q2 + o, al, ah, a2); b2 = idot16(q2 + o, bl, bh, b2);
    a3 = idot16(q3 + o, al, ah, a3); b3 = idot16(q3 + o, bl, bh, b3);
  }
  const cb = <usize>codeBytes(fmt, dc), qo = <usize>n << 1;
  const da = load<f32>(ka + cb), db = load<f32>(kb + cb);
  // The integer part first, then the k^R part added (and the scale) by dotsBf16.
  let dq = load<f32>(q0 + qo);
  store<f32>(outA, <f32>isum(a0) * (dq * da)); store<f32>(outB, <f32>isum(b0) * (dq * db));
  dq = load<f32>(q1 + qo);
  store<f32>(outA + ROW_BYTES, <f32>isum(a1) * (dq * da)); store<f32>(outB + ROW_BYTES, <f32>isum(b1) * (dq * db));
  dq = load<f32>(q2 + qo);
  store<f32>(outA + 2 * ROW_BYTES, <f32>isum(a2) * (dq * da)); store<f32>(outB + 2 * ROW_BYTES, <f32>isum(b2) * (dq * db));
  dq = load<f32>(q3 + qo);
  store<f32>(outA + 3 * ROW_BYTES, <f32>isum(a3) * (dq * da)); store<f32>(outB + 3 * ROW_BYTES, <f32>isum(b3) * (dq * db));
  const kr = ropeAt(fmt, dc);
  dotsBf16(q0 + qo + 4, qs, ka + kr, kb + kr, dr, scale, outA, outB, true);
}

/**
 * dotBf16 of 4 queries (f32, q0 + j·qs) against two bf16 rows ka, kb (n values each), the rows
 * widened once for the 4 queries. Stores t into outA / outB + j·ROW_BYTES, or with `add`
 * (what is there + t) · scale.
 */
// @ts-ignore: decorator
@inline function dotsBf16(q0: usize, qs: usize, ka: usize, kb: usize, n: i32, scale: f32, outA: usize, outB: usize, add: bool): void {
  const q1 = q0 + qs, q2 = q1 + qs, q3 = q2 + qs;
  const zero = f32x4.splat(0);
  let a0 = zero, a1 = zero, a2 = zero, a3 = zero, b0 = zero, b1 = zero, b2 = zero, b3 = zero;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const ha = v128.load(ka + (<usize>i << 1)), hb = v128.load(kb + (<usize>i << 1));
    const al = bf16Lo(ha), ah = bf16Hi(ha), bl = bf16Lo(hb), bh = bf16Hi(hb);
    const o = <usize>i << 2;
    let x = v128.load(q0 + o), y = v128.load(q0 + o, 16);
    a0 = madd(y, ah, madd(x, al, a0)); b0 = madd(y, bh, madd(x, bl, b0));
    x = v128.load(q1 + o); y = v128.load(q1 + o, 16);
    a1 = madd(y, ah, madd(x, al, a1)); b1 = madd(y, bh, madd(x, bl, b1));
    x = v128.load(q2 + o); y = v128.load(q2 + o, 16);
    a2 = madd(y, ah, madd(x, al, a2)); b2 = madd(y, bh, madd(x, bl, b2));
    x = v128.load(q3 + o); y = v128.load(q3 + o, 16);
    a3 = madd(y, ah, madd(x, al, a3)); b3 = madd(y, bh, madd(x, bl, b3));
  }
  finishBf16(q0, ka, i, n, hsum(a0), scale, outA, add); finishBf16(q0, kb, i, n, hsum(b0), scale, outB, add);
  finishBf16(q1, ka, i, n, hsum(a1), scale, outA + ROW_BYTES, add); finishBf16(q1, kb, i, n, hsum(b1), scale, outB + ROW_BYTES, add);
  finishBf16(q2, ka, i, n, hsum(a2), scale, outA + 2 * ROW_BYTES, add); finishBf16(q2, kb, i, n, hsum(b2), scale, outB + 2 * ROW_BYTES, add);
  finishBf16(q3, ka, i, n, hsum(a3), scale, outA + 3 * ROW_BYTES, add); finishBf16(q3, kb, i, n, hsum(b3), scale, outB + 3 * ROW_BYTES, add);
}

/** The tail of dotBf16 (values i … n − 1) after its vector part s; then store as dotsBf16 says. */
// @ts-ignore: decorator
@inline function finishBf16(q: usize, k: usize, i: i32, n: i32, s: f32, scale: f32, out: usize, add: bool): void {
  for (; i < n; i++) s += load<f32>(q + (<usize>i << 2)) * fromBf16(<u32>load<u16>(k + (<usize>i << 1)));
  store<f32>(out, add ? (load<f32>(out) + s) * scale : s);
}

// ---------------------------------------------------------------------------------------------
// acc += P · V: bf16 values widened in registers (pv); int8/int4 codes in exact integer sums (pvInt).

/** Codes c … c + 7 (c a multiple of 8) as signed int8 in lanes 0–7 (nib, eight: as codes16). */
// @ts-ignore: decorator
@inline function codes8(fmt: i32, row: usize, c: i32, nib: v128, eight: v128): v128 {
  if (fmt == INT8) return v128.load64_zero(row + <usize>c);
  const w = c & 31;
  const b = v128.load64_zero(row + <usize>(((c >> 5) << 4) + (w & 15)));
  return i8x16.sub(v128.and(w >= 16 ? i16x8.shr_u(b, 4) : b, nib), eight);
}

/** The unscaled value (the code, or the bf16 value) of column c of a row. */
// @ts-ignore: decorator
@inline function rawValue(fmt: i32, row: usize, c: i32): f32 {
  if (fmt == BF16) return fromBf16(<u32>load<u16>(row + (<usize>c << 1)));
  if (fmt == INT8) return <f32>load<i8>(row + <usize>c);
  const w = c & 31, byte = <i32>load<u8>(row + <usize>(((c >> 5) << 4) + (w & 15)));
  return <f32>(((w < 16 ? byte : byte >> 4) & 15) - 8);
}

/** bf16 rows: acc rows of 4 (or 1) queries += Σ_b p[j][b] · value_b, for nk rows from vb (vs bytes apart). */
// @ts-ignore: decorator
@inline function pv(fmt: i32, four: bool, s0: usize, acc0: usize, accS: usize, vb: usize, vs: usize, dc: i32, nk: i32): void {
  const s1 = s0 + ROW_BYTES, s2 = s1 + ROW_BYTES, s3 = s2 + ROW_BYTES;
  const c1 = acc0 + accS, c2 = c1 + accS, c3 = c2 + accS;
  const kEnd = <usize>nk << 2;
  let c = 0;
  for (; c + 8 <= dc; c += 8) {
    const o = <usize>c << 2;
    let a0 = v128.load(acc0 + o), b0 = v128.load(acc0 + o, 16);
    let a1 = a0, b1 = b0, a2 = a0, b2 = b0, a3 = a0, b3 = b0;
    if (four) {
      a1 = v128.load(c1 + o); b1 = v128.load(c1 + o, 16);
      a2 = v128.load(c2 + o); b2 = v128.load(c2 + o, 16);
      a3 = v128.load(c3 + o); b3 = v128.load(c3 + o, 16);
    }
    let vp = vb;
    for (let k: usize = 0; k < kEnd; k += 4, vp += vs) {
      const h = v128.load(vp + (<usize>c << 1));
      const v0 = bf16Lo(h), v1 = bf16Hi(h);
      let p = v128.load32_splat(s0 + k); a0 = madd(p, v0, a0); b0 = madd(p, v1, b0);
      if (four) {
        p = v128.load32_splat(s1 + k); a1 = madd(p, v0, a1); b1 = madd(p, v1, b1);
        p = v128.load32_splat(s2 + k); a2 = madd(p, v0, a2); b2 = madd(p, v1, b2);
        p = v128.load32_splat(s3 + k); a3 = madd(p, v0, a3); b3 = madd(p, v1, b3);
      }
    }
    v128.store(acc0 + o, a0); v128.store(acc0 + o, b0, 16);
    if (four) {
      v128.store(c1 + o, a1); v128.store(c1 + o, b1, 16);
      v128.store(c2 + o, a2); v128.store(c2 + o, b2, 16);
      v128.store(c3 + o, a3); v128.store(c3 + o, b3, 16);
    }
  }
  // Columns left (dc mod 8), one at a time, in the same order per query.
  for (; c < dc; c++) {
    const o = <usize>c << 2, nqt = four ? 4 : 1;
    for (let j = 0; j < nqt; j++) {
      const ar = acc0 + <usize>j * accS + o, sr = s0 + <usize>j * ROW_BYTES;
      let a = load<f32>(ar);
      let vp = vb;
      for (let k: usize = 0; k < kEnd; k += 4, vp += vs) a += load<f32>(sr + k) * rawValue(fmt, vp, c);
      store<f32>(ar, a);
    }
  }
}

/**
 * For int8/int4 rows: a p row's weights w_b = p_b·d_b (b < nk) as i16 codes in place (row + 2b;
 * code nk = 0 when nk is odd, so keys go in pairs), w_b ≈ code_b·s, s = max w / 32767; returns s.
 * The weights' rounding (≤ 2⁻¹⁶ of the block's largest) is far below the int8 codes'.
 */
// @ts-ignore: decorator
@inline function weights16(fmt: i32, row: usize, vb: usize, vs: usize, dc: i32, nk: i32): f32 {
  const cb = <usize>codeBytes(fmt, dc);
  let wmax: f32 = 0;
  for (let b = 0; b < nk; b++) {
    const o = row + (<usize>b << 2);
    const w = load<f32>(o) * load<f32>(vb + <usize>b * vs + cb);
    store<f32>(o, w);
    wmax = max(wmax, w);
  }
  const inv: f32 = wmax > 0 ? 32767 / wmax : 0;
  // In place: i16 code b goes to row + 2b, at or before the f32 weight b it comes from.
  for (let b = 0; b < nk; b++) store<i16>(row + (<usize>b << 1), <i16>nearest(load<f32>(row + (<usize>b << 2)) * inv));
  if (nk & 1) store<i16>(row + (<usize>nk << 1), 0);
  return wmax / 32767;
}

/**
 * acc rows of 4 (or 1) queries += Σ_b w_b · code_b for int8/int4 rows: the weights as i16 codes
 * (weights16), keys in pairs, each pair's codes interleaved so that i32x4.dot_i16x8_s sums
 * w_b·code_b + w_{b+1}·code_{b+1} per column exactly; the i32 sums (≤ 64·32767·127) are scaled
 * into the f32 accumulators once per block.
 */
// @ts-ignore: decorator
@inline function pvInt(fmt: i32, four: bool, s0: usize, acc0: usize, accS: usize, vb: usize, vs: usize, dc: i32, nk: i32): void {
  const s1 = s0 + ROW_BYTES, s2 = s1 + ROW_BYTES, s3 = s2 + ROW_BYTES;
  const c1 = acc0 + accS, c2 = c1 + accS, c3 = c2 + accS;
  const w0 = weights16(fmt, s0, vb, vs, dc, nk);
  let w1: f32 = 0, w2: f32 = 0, w3: f32 = 0;
  if (four) { w1 = weights16(fmt, s1, vb, vs, dc, nk); w2 = weights16(fmt, s2, vb, vs, dc, nk); w3 = weights16(fmt, s3, vb, vs, dc, nk); }
  const zero = i32x4.splat(0);
  const nib = v128.load(NIBBLES8), eight = v128.load(EIGHTS8); // int4's, loaded once (see codes16)
  let c = 0;
  for (; c + 8 <= dc; c += 8) {
    let a0 = zero, b0 = zero, a1 = zero, b1 = zero, a2 = zero, b2 = zero, a3 = zero, b3 = zero;
    for (let b = 0; b < nk; b += 2) {
      const ra = vb + <usize>b * vs, rb = b + 1 < nk ? ra + vs : ra;
      const x = v128.shuffle<u8>(codes8(fmt, ra, c, nib, eight), codes8(fmt, rb, c, nib, eight), 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      const lo = i16x8.extend_low_i8x16_s(x), hi = i16x8.extend_high_i8x16_s(x);
      const o = <usize>b << 1;
      let w = v128.load32_splat(s0 + o); a0 = i32x4.add(a0, i32x4.dot_i16x8_s(lo, w)); b0 = i32x4.add(b0, i32x4.dot_i16x8_s(hi, w));
      if (four) {
        w = v128.load32_splat(s1 + o); a1 = i32x4.add(a1, i32x4.dot_i16x8_s(lo, w)); b1 = i32x4.add(b1, i32x4.dot_i16x8_s(hi, w));
        w = v128.load32_splat(s2 + o); a2 = i32x4.add(a2, i32x4.dot_i16x8_s(lo, w)); b2 = i32x4.add(b2, i32x4.dot_i16x8_s(hi, w));
        w = v128.load32_splat(s3 + o); a3 = i32x4.add(a3, i32x4.dot_i16x8_s(lo, w)); b3 = i32x4.add(b3, i32x4.dot_i16x8_s(hi, w));
      }
    }
    const o = <usize>c << 2;
    addScaled(acc0 + o, a0, b0, w0);
    if (four) { addScaled(c1 + o, a1, b1, w1); addScaled(c2 + o, a2, b2, w2); addScaled(c3 + o, a3, b3, w3); }
  }
  // Columns left (dc mod 8), one at a time, with the same exact sums.
  for (; c < dc; c++) {
    const nqt = four ? 4 : 1;
    for (let j = 0; j < nqt; j++) {
      const sr = s0 + <usize>j * ROW_BYTES;
      let t = 0;
      for (let b = 0; b < nk; b++) t += <i32>load<i16>(sr + (<usize>b << 1)) * <i32>rawValue(fmt, vb + <usize>b * vs, c);
      const ar = acc0 + <usize>j * accS + (<usize>c << 2);
      store<f32>(ar, <f32>t * (j == 0 ? w0 : j == 1 ? w1 : j == 2 ? w2 : w3) + load<f32>(ar));
    }
  }
}

/** acc[0..8) += f32(lo, hi) · s. */
// @ts-ignore: decorator
@inline function addScaled(acc: usize, lo: v128, hi: v128, s: f32): void {
  const sv = f32x4.splat(s);
  v128.store(acc, madd(f32x4.convert_i32x4_s(lo), sv, v128.load(acc)));
  v128.store(acc, madd(f32x4.convert_i32x4_s(hi), sv, v128.load(acc, 16)), 16);
}

// ---------------------------------------------------------------------------------------------

// @ts-ignore: decorator
@inline function block(fmt: i32, q: usize, qStride: i32, nq: i32, qPos0: i32, qGroup: i32, dc: i32, dr: i32,
                       k: usize, kStride: i32, n: i32, kPos0: i32, scale: f32,
                       m: usize, l: usize, acc: usize, accStride: i32, scratch: usize): void {
  const qs = <usize>qStride << 2, ks = <usize>kStride << 2, accS = <usize>accStride << 2;
  for (let b0 = 0; b0 < n; b0 += SUB) {
    const nb = min(SUB, n - b0);
    const kpos = kPos0 + b0;
    const kb = k + <usize>b0 * ks;
    let r = 0;
    for (; r + 4 <= nq; r += 4) {
      const nv0 = visible(r, qPos0, qGroup, kpos, nb), nv1 = visible(r + 1, qPos0, qGroup, kpos, nb);
      const nv2 = visible(r + 2, qPos0, qGroup, kpos, nb), nv3 = visible(r + 3, qPos0, qGroup, kpos, nb);
      const nk = max(max(nv0, nv1), max(nv2, nv3));
      if (nk == 0) continue;
      const q0 = q + <usize>r * qs;
      const s0 = scratch + <usize>r * ROW_BYTES;
      // Rows b and b + h together: two streams, as attn_block reads them.
      const h = nk >> 1, hs = <usize>h << 2;
      for (let b = 0; b < h; b++) {
        const ka = kb + <usize>b * ks, out = s0 + (<usize>b << 2);
        scores4x2(fmt, q0, qs, ka, ka + <usize>h * ks, dc, dr, scale, out, out + hs);
      }
      if (nk & 1) {
        const b = nk - 1, ka = kb + <usize>b * ks;
        for (let j = 0; j < 4; j++) {
          store<f32>(s0 + <usize>j * ROW_BYTES + (<usize>b << 2), score1(fmt, q0 + <usize>j * qs, ka, dc, dr) * scale);
        }
      }
      const acc0 = acc + <usize>r * accS;
      softmaxTile(s0, nv0, nv1, nv2, nv3, (nk + 3) & ~3, m + (<usize>r << 2), l + (<usize>r << 2), acc0, accS, dc);
      if (fmt == BF16) pv(fmt, true, s0, acc0, accS, kb, ks, dc, nk);
      else pvInt(fmt, true, s0, acc0, accS, kb, ks, dc, nk);
    }
    for (; r < nq; r++) {
      const nv = visible(r, qPos0, qGroup, kpos, nb);
      if (nv == 0) continue;
      const q0 = q + <usize>r * qs, s0 = scratch + <usize>r * ROW_BYTES;
      for (let b = 0; b < nv; b++) store<f32>(s0 + (<usize>b << 2), score1(fmt, q0, kb + <usize>b * ks, dc, dr) * scale);
      const acc0 = acc + <usize>r * accS;
      softmaxRow(s0, nv, (nv + 3) & ~3, m + (<usize>r << 2), l + (<usize>r << 2), acc0, dc);
      if (fmt == BF16) pv(fmt, false, s0, acc0, accS, kb, ks, dc, nv);
      else pvInt(fmt, false, s0, acc0, accS, kb, ks, dc, nv);
    }
  }
}

/**
 * attn_block over latent cache rows in format fmt (1 bf16, 2 int8, 3 int4): fold n rows from k
 * (kStride·4 bytes apart, at positions kPos0 …) into the state of nq queries, each row both key
 * ([c_kv ; k^R]) and value (c_kv, dc values). Query r: the record at q + r·qStride·4 (int8/int4:
 * latent_query's; bf16: f32 [q̃ ; q^R]), at position qPos0 + ⌊r / qGroup⌋ (causal). m, l, acc and
 * scratch as attn_block's, with dv = dc.
 */
export function attn_block_latent(fmt: i32, q: usize, qStride: i32, nq: i32, qPos0: i32, qGroup: i32, dc: i32, dr: i32,
                                  k: usize, kStride: i32, n: i32, kPos0: i32, scale: f32,
                                  m: usize, l: usize, acc: usize, accStride: i32, scratch: usize): void {
  if (n <= 0 || nq <= 0) return;
  if (ASC_FEATURE_RELAXED_SIMD) {
    // A constant: the other build's int paths are not compiled in.
    if (fmt == INT8) blockDot8(q, qStride, nq, qPos0, qGroup, dc, dr, k, kStride, n, kPos0, scale, m, l, acc, accStride, scratch);
    else if (fmt == INT4) blockDot4(q, qStride, nq, qPos0, qGroup, dc, dr, k, kStride, n, kPos0, scale, m, l, acc, accStride, scratch);
    else if (fmt == BF16) blockBf16(q, qStride, nq, qPos0, qGroup, dc, dr, k, kStride, n, kPos0, scale, m, l, acc, accStride, scratch);
  } else if (fmt == INT8) blockInt8(q, qStride, nq, qPos0, qGroup, dc, dr, k, kStride, n, kPos0, scale, m, l, acc, accStride, scratch);
  else if (fmt == INT4) blockInt4(q, qStride, nq, qPos0, qGroup, dc, dr, k, kStride, n, kPos0, scale, m, l, acc, accStride, scratch);
  else if (fmt == BF16) blockBf16(q, qStride, nq, qPos0, qGroup, dc, dr, k, kStride, n, kPos0, scale, m, l, acc, accStride, scratch);
}

// One function per format, not inlined into one: V8 allocates registers per function, and with the
// three formats' loops in one function it spilled accumulators inside the plain build's loops.
function blockBf16(q: usize, qStride: i32, nq: i32, qPos0: i32, qGroup: i32, dc: i32, dr: i32, k: usize, kStride: i32, n: i32,
                   kPos0: i32, scale: f32, m: usize, l: usize, acc: usize, accStride: i32, scratch: usize): void {
  block(BF16, q, qStride, nq, qPos0, qGroup, dc, dr, k, kStride, n, kPos0, scale, m, l, acc, accStride, scratch);
}
function blockInt8(q: usize, qStride: i32, nq: i32, qPos0: i32, qGroup: i32, dc: i32, dr: i32, k: usize, kStride: i32, n: i32,
                   kPos0: i32, scale: f32, m: usize, l: usize, acc: usize, accStride: i32, scratch: usize): void {
  block(INT8, q, qStride, nq, qPos0, qGroup, dc, dr, k, kStride, n, kPos0, scale, m, l, acc, accStride, scratch);
}
function blockInt4(q: usize, qStride: i32, nq: i32, qPos0: i32, qGroup: i32, dc: i32, dr: i32, k: usize, kStride: i32, n: i32,
                   kPos0: i32, scale: f32, m: usize, l: usize, acc: usize, accStride: i32, scratch: usize): void {
  block(INT4, q, qStride, nq, qPos0, qGroup, dc, dr, k, kStride, n, kPos0, scale, m, l, acc, accStride, scratch);
}

// ---------------------------------------------------------------------------------------------
// Relaxed build, int8/int4 rows: both halves as integer dot products on 7-bit operands
// (dot7: 16 multiply-adds, exact, since the second operand is in [0, 127]). All queries of a call (the heads of a token) read the same rows, so what is laid out
// per key (bias sums, scales, the value tile) is laid out once per sub-block for all of them.
//   Scores: queries quantised to 7 bits (|code| ≤ 63) stored + QBIAS, so Σ (code_q + 64)·code_k
//   − 64·Σ code_k is the exact integer dot product; 2 queries × 4 rows a tile, one lane per 4
//   columns, the lanes summed once per (query, row) at the end.
//   Values: w_b = p_b·d_b ≥ 0 rounded to [0, 127] (step max w / 127) per query and sub-block;
//   the rows' codes transposed once per 16 columns so 4 bytes are 4 keys of one column: one
//   dot per 4 keys × 4 columns against the 4 keys' weights, exact in i32, scaled once per block.
//   k^R: f32 from bf16, widened by a shift and a mask (ropeDots), the 4 rows' sums side by side.

// @ts-ignore: decorator
@inline const QBIAS: i32 = 64;
// @ts-ignore: decorator
@inline const QMAX7: f32 = 63;

/**
 * latent_query for the relaxed build: ceil32(dc) bytes code + QBIAS (|code| ≤ 63), d = max|q̃| / 63,
 * then q^R as f32, each whole 8 values as its even ones, then its odd ones.
 */
function latentQuery7(src: usize, srcStride: i32, nq: i32, dc: i32, dr: i32, dst: usize, dstStride: i32): void {
  const n = ceil32(dc);
  for (let r = 0; r < nq; r++) {
    const x = src + ((<usize>r * <usize>srcStride) << 2);
    const o = dst + <usize>r * <usize>dstStride;
    const amax = absMax(x, dc);
    const inv: f32 = amax > 0 ? QMAX7 / amax : 0;
    for (let i = 0; i < n; i++) store<u8>(o + <usize>i, (i < dc ? code(load<f32>(x + (<usize>i << 2)), inv, QMAX7) : 0) + QBIAS);
    store<f32>(o + <usize>n, amax / QMAX7);
    // q^R: in each 8 values the even ones, then the odd ones (ropeDots widens bf16 k^R that way).
    const qr = o + <usize>n + 4, xr = x + (<usize>dc << 2), dr8 = dr & ~7;
    for (let i = 0; i < dr; i++) {
      const at = i < dr8 ? (i & ~7) + ((i & 1) << 2) + ((i & 7) >> 1) : i;
      store<f32>(qr + (<usize>at << 2), load<f32>(xr + (<usize>i << 2)));
    }
  }
}

/**
 * c + the 4-byte dot products of a (i8) and b (0…127), exact (a pair ≤ 2·127·127 fits i16). Not
 * i32x4.relaxed_dot_i8x16_i7x16_add_s: Node 20's V8 summed one accumulator into another with it
 * (two dots from the same zero); on x86 both lower to pmaddubsw, pmaddwd, paddd. The pairs are
 * added by a dot with ones rather than extadd_pairwise, whose constant V8 reloads at every use.
 * Callers pass the ones loaded from ONES16 once per loop (see simd.ts).
 */
// @ts-ignore: decorator
@inline function dot7(a: v128, b: v128, c: v128, ones: v128): v128 {
  return i32x4.add(c, i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(a, b), ones));
}

/** [Σ lanes of a0, … of a3]. */
// @ts-ignore: decorator
@inline function sums4(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const t0 = i32x4.add(v128.shuffle<i32>(a0, a1, 0, 4, 1, 5), v128.shuffle<i32>(a0, a1, 2, 6, 3, 7));
  const t1 = i32x4.add(v128.shuffle<i32>(a2, a3, 0, 4, 1, 5), v128.shuffle<i32>(a2, a3, 2, 6, 3, 7));
  return i32x4.add(v128.shuffle<i32>(t0, t1, 0, 1, 4, 5), v128.shuffle<i32>(t0, t1, 2, 3, 6, 7));
}

/**
 * Integer parts of the scores of queries qa, qb (7-bit records) against rows r0 … r3, times
 * d_q·d_k, to outA / outB (4 consecutive f32). bias: the rows' 64·Σ code, dk: their scales.
 */
// @ts-ignore: decorator
@inline function dotScores(fmt: i32, qa: usize, qb: usize, r0: usize, r1: usize, r2: usize, r3: usize, n32: i32,
                           bias: v128, dk: v128, outA: usize, outB: usize): void {
  const zero = i32x4.splat(0);
  let a0 = zero, a1 = zero, a2 = zero, a3 = zero, b0 = zero, b1 = zero, b2 = zero, b3 = zero;
  const ones = v128.load(ONES16);
  const nib = v128.load(NIBBLES8), eight = v128.load(EIGHTS8); // int4's, loaded once (see codes16)
  for (let c = 0; c < (n32 >> 4); c++) {
    const o = <usize>c << 4;
    const ua = v128.load(qa + o), ub = v128.load(qb + o);
    let x = codes16(fmt, r0, c, nib, eight); a0 = dot7(x, ua, a0, ones); b0 = dot7(x, ub, b0, ones);
    x = codes16(fmt, r1, c, nib, eight); a1 = dot7(x, ua, a1, ones); b1 = dot7(x, ub, b1, ones);
    x = codes16(fmt, r2, c, nib, eight); a2 = dot7(x, ua, a2, ones); b2 = dot7(x, ub, b2, ones);
    x = codes16(fmt, r3, c, nib, eight); a3 = dot7(x, ua, a3, ones); b3 = dot7(x, ub, b3, ones);
  }
  const dq = <usize>n32;
  v128.store(outA, f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(sums4(a0, a1, a2, a3), bias)), f32x4.mul(f32x4.splat(load<f32>(qa + dq)), dk)));
  v128.store(outB, f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(sums4(b0, b1, b2, b3), bias)), f32x4.mul(f32x4.splat(load<f32>(qb + dq)), dk)));
}

/** [Σ lanes of a0, … of a3] in f32, each as ((l0 + l1) + (l2 + l3)). */
// @ts-ignore: decorator
@inline function sumsF4(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const t0 = f32x4.add(v128.shuffle<f32>(a0, a1, 0, 4, 2, 6), v128.shuffle<f32>(a0, a1, 1, 5, 3, 7));
  const t1 = f32x4.add(v128.shuffle<f32>(a2, a3, 0, 4, 2, 6), v128.shuffle<f32>(a2, a3, 1, 5, 3, 7));
  return f32x4.add(v128.shuffle<f32>(t0, t1, 0, 1, 4, 5), v128.shuffle<f32>(t0, t1, 2, 3, 6, 7));
}

/**
 * q^R·k^R of queries qa, qb (as latentQuery7 lays q^R out) with the bf16 k^R of rows ra, rb over
 * the first dr8 values (a multiple of 8): [a·ra, a·rb, b·ra, b·rb]. Eight bf16 widen by a shift
 * (the even values) and a mask (the odd ones). Two rows at a time: 2 queries × 4 rows of f32
 * accumulators would not stay in 16 registers.
 */
// @ts-ignore: decorator
@inline function ropePair(qa: usize, qb: usize, ra: usize, rb: usize, dr8: i32): v128 {
  const zero = f32x4.splat(0), odd = i32x4.splat(0xFFFF0000);
  let a0 = zero, a1 = zero, b0 = zero, b1 = zero;
  for (let i = 0; i < dr8; i += 8) {
    const o = <usize>i << 2, h = <usize>i << 1;
    const ae = v128.load(qa + o), ao = v128.load(qa + o, 16), be = v128.load(qb + o), bo = v128.load(qb + o, 16);
    let x = v128.load(ra + h), e = i32x4.shl(x, 16), d = v128.and(x, odd);
    a0 = madd(ao, d, madd(ae, e, a0)); b0 = madd(bo, d, madd(be, e, b0));
    x = v128.load(rb + h); e = i32x4.shl(x, 16); d = v128.and(x, odd);
    a1 = madd(ao, d, madd(ae, e, a1)); b1 = madd(bo, d, madd(be, e, b1));
  }
  return sumsF4(a0, a1, b0, b1);
}

/**
 * Scores of queries qa, qb against the k^R of rows r0 … r3 (dr values): outA / outB (4 f32, the
 * integer parts) become (out + q^R·k^R)·scale. Both outs are read before either is written, so
 * qa = qb with outA = outB (a tile's missing query) gives the one answer.
 */
// @ts-ignore: decorator
@inline function ropeDots(qa: usize, qb: usize, r0: usize, r1: usize, r2: usize, r3: usize, dr: i32, scale: f32,
                          outA: usize, outB: usize): void {
  const dr8 = dr & ~7;
  const p01 = ropePair(qa, qb, r0, r1, dr8), p23 = ropePair(qa, qb, r2, r3, dr8);
  let sa = v128.shuffle<f32>(p01, p23, 0, 1, 4, 5), sb = v128.shuffle<f32>(p01, p23, 2, 3, 6, 7);
  // The values past the last 8 (dr mod 8), in order, the 4 rows side by side.
  for (let i = dr8; i < dr; i++) {
    const h = <usize>i << 1;
    const k = f32x4(fromBf16(<u32>load<u16>(r0 + h)), fromBf16(<u32>load<u16>(r1 + h)), fromBf16(<u32>load<u16>(r2 + h)), fromBf16(<u32>load<u16>(r3 + h)));
    sa = madd(f32x4.splat(load<f32>(qa + (<usize>i << 2))), k, sa);
    sb = madd(f32x4.splat(load<f32>(qb + (<usize>i << 2))), k, sb);
  }
  const sv = f32x4.splat(scale), oa = v128.load(outA), ob = v128.load(outB);
  v128.store(outA, f32x4.mul(f32x4.add(oa, sa), sv));
  v128.store(outB, f32x4.mul(f32x4.add(ob, sb), sv));
}

/** Row b of a sub-block, rows past the last one (≥ last) read as the last: groups of 4 stay in bounds. */
// @ts-ignore: decorator
@inline function rowOf(kb: usize, ks: usize, b: i32, last: i32): usize {
  return kb + <usize>min(b, last) * ks;
}

/**
 * A p row's weights w_b = p_b·d_b (b < pEnd, a multiple of 4; d at dks) as codes in [0, 127] in
 * place (byte b of the row), step max w / 127 stored at row + ROW_BYTES − 4 (codes take ≤ SUB bytes).
 */
// @ts-ignore: decorator
@inline function weights7(row: usize, dks: usize, pEnd: i32): void {
  let vmax = f32x4.splat(0);
  for (let b = 0; b < pEnd; b += 4) {
    const o = row + (<usize>b << 2);
    const w = f32x4.mul(v128.load(o), v128.load(dks + (<usize>b << 2)));
    v128.store(o, w);
    vmax = f32x4.max(vmax, w);
  }
  const wmax = max(max(f32x4.extract_lane(vmax, 0), f32x4.extract_lane(vmax, 1)), max(f32x4.extract_lane(vmax, 2), f32x4.extract_lane(vmax, 3)));
  const inv = f32x4.splat(wmax > 0 ? <f32>127 / wmax : 0);
  // Bytes b … b + 3 are written after f32 b … b + 3 are read, and lie at or before them.
  for (let b = 0; b < pEnd; b += 4) {
    const c = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(row + (<usize>b << 2)), inv)));
    const h = i16x8.narrow_i32x4_s(c, c);
    v128.store32_lane(row + <usize>b, i8x16.narrow_i16x8_u(h, h), 0);
  }
  store<f32>(row + ROW_BYTES - 4, wmax / 127);
}

/** acc[0..cols) += f32(a0 … a3 lanes) · s (16 columns, or the first cols of them one by one). */
// @ts-ignore: decorator
@inline function addScaled16(acc: usize, a0: v128, a1: v128, a2: v128, a3: v128, s: f32, cols: i32): void {
  if (cols == 16) {
    addScaled(acc, a0, a1, s);
    addScaled(acc + 32, a2, a3, s);
    return;
  }
  // A column tail (dc mod 16), lane by lane: f32(sum)·s, then added.
  const sv = f32x4.splat(s);
  for (let v = 0; v < (cols + 3) >> 2; v++) {
    const x = madd(f32x4.convert_i32x4_s(v == 0 ? a0 : v == 1 ? a1 : v == 2 ? a2 : a3), sv, f32x4.splat(0));
    for (let i = 0; i < min(4, cols - (v << 2)); i++) {
      const o = acc + (<usize>((v << 2) + i) << 2);
      store<f32>(o, load<f32>(o) + (i == 0 ? f32x4.extract_lane(x, 0) : i == 1 ? f32x4.extract_lane(x, 1) : i == 2 ? f32x4.extract_lane(x, 2) : f32x4.extract_lane(x, 3)));
    }
  }
}

/** acc rows (16 columns from accA / accB) of queries with weight rows sa, sb += Σ_b w_b·code_b over the tile's first g4 keys. */
// @ts-ignore: decorator
@inline function dotValues(sa: usize, sb: usize, tile: usize, g4: i32, accA: usize, accB: usize, cols: i32, two: bool): void {
  const zero = i32x4.splat(0);
  const ones = v128.load(ONES16);
  let a0 = zero, a1 = zero, a2 = zero, a3 = zero, b0 = zero, b1 = zero, b2 = zero, b3 = zero;
  for (let g = 0; g < g4; g += 4) {
    const t = tile + (<usize>g << 4);
    const t0 = v128.load(t), t1 = v128.load(t, 16), t2 = v128.load(t, 32), t3 = v128.load(t, 48);
    const wa = v128.load32_splat(sa + <usize>g);
    a0 = dot7(t0, wa, a0, ones); a1 = dot7(t1, wa, a1, ones); a2 = dot7(t2, wa, a2, ones); a3 = dot7(t3, wa, a3, ones);
    if (two) {
      const wb = v128.load32_splat(sb + <usize>g);
      b0 = dot7(t0, wb, b0, ones); b1 = dot7(t1, wb, b1, ones); b2 = dot7(t2, wb, b2, ones); b3 = dot7(t3, wb, b3, ones);
    }
  }
  addScaled16(accA, a0, a1, a2, a3, load<f32>(sa + ROW_BYTES - 4), cols);
  if (two) addScaled16(accB, b0, b1, b2, b3, load<f32>(sb + ROW_BYTES - 4), cols);
}

/** block() for int8/int4 rows in the relaxed build (see the section's comment); inlined per format so its branches fold. */
// @ts-ignore: decorator
@inline function blockDot(fmt: i32, q: usize, qStride: i32, nq: i32, qPos0: i32, qGroup: i32, dc: i32, dr: i32,
                  k: usize, kStride: i32, n: i32, kPos0: i32, scale: f32,
                  m: usize, l: usize, acc: usize, accStride: i32, scratch: usize): void {
  const qs = <usize>qStride << 2, ks = <usize>kStride << 2, accS = <usize>accStride << 2;
  const n32 = ceil32(dc), cb = <usize>codeBytes(fmt, dc), kr = ropeAt(fmt, dc), qr = <usize>n32 + 4;
  // Past the score rows: per key 64·Σ code (from the row's sum) and d, then the value tile (LATENT_SCRATCH bytes).
  const bias = scratch + <usize>nq * ROW_BYTES, dks = bias + ROW_BYTES, tile = dks + ROW_BYTES;
  const nib = v128.load(NIBBLES8), eight = v128.load(EIGHTS8); // int4's, loaded once (see codes16)
  for (let b0 = 0; b0 < n; b0 += SUB) {
    const nb = min(SUB, n - b0), kpos = kPos0 + b0, kb = k + <usize>b0 * ks;
    // The last query sees the most keys.
    const nAll = visible(nq - 1, qPos0, qGroup, kpos, nb);
    if (nAll == 0) continue;
    const last = nAll - 1, nAll4 = (nAll + 3) & ~3;
    for (let b = 0; b < nAll4; b++) {
      const row = rowOf(kb, ks, b, last);
      store<i32>(bias + (<usize>b << 2), QBIAS * load<i32>(row + cb, 4));
      store<f32>(dks + (<usize>b << 2), load<f32>(row + cb));
    }
    // Scores, softmax and weight codes, 4 queries at a time (t of them in the last tile).
    for (let r = 0; r < nq; r += 4) {
      const t = min(4, nq - r);
      const nk = visible(r + t - 1, qPos0, qGroup, kpos, nb);
      if (nk == 0) continue;
      const q0 = q + <usize>r * qs, q1 = t > 1 ? q0 + qs : q0, q2 = t > 2 ? q0 + 2 * qs : q0, q3 = t > 3 ? q0 + 3 * qs : q2;
      const s0 = scratch + <usize>r * ROW_BYTES, s1 = t > 1 ? s0 + ROW_BYTES : s0;
      const s2 = t > 2 ? s0 + 2 * ROW_BYTES : s0, s3 = t > 3 ? s0 + 3 * ROW_BYTES : s2;
      for (let b = 0; b < nk; b += 4) {
        const r0 = rowOf(kb, ks, b, last), r1 = rowOf(kb, ks, b + 1, last), r2 = rowOf(kb, ks, b + 2, last), r3 = rowOf(kb, ks, b + 3, last);
        const bv = v128.load(bias + (<usize>b << 2)), dk = v128.load(dks + (<usize>b << 2)), o = <usize>b << 2;
        dotScores(fmt, q0, q1, r0, r1, r2, r3, n32, bv, dk, s0 + o, s1 + o);
        if (t > 2) dotScores(fmt, q2, q3, r0, r1, r2, r3, n32, bv, dk, s2 + o, s3 + o);
        ropeDots(q0 + qr, q1 + qr, r0 + kr, r1 + kr, r2 + kr, r3 + kr, dr, scale, s0 + o, s1 + o);
        if (t > 2) ropeDots(q2 + qr, q3 + qr, r0 + kr, r1 + kr, r2 + kr, r3 + kr, dr, scale, s2 + o, s3 + o);
      }
      const pEnd = (nk + 3) & ~3;
      for (let j = 0; j < t; j++) {
        const nv = visible(r + j, qPos0, qGroup, kpos, nb), row = s0 + <usize>j * ROW_BYTES;
        if (nv > 0) softmaxRow(row, nv, pEnd, m + (<usize>(r + j) << 2), l + (<usize>(r + j) << 2), acc + <usize>(r + j) * accS, dc);
        else memory.fill(row, 0, <usize>pEnd << 2);
        weights7(row, dks, pEnd);
      }
    }
    // Values, 16 columns at a time: the tile once, then every query's sums from it.
    for (let c = 0; c < dc; c += 16) {
      for (let g = 0; g < nAll4; g += 4) {
        const x0 = codes16(fmt, rowOf(kb, ks, g, last), c >> 4, nib, eight), x1 = codes16(fmt, rowOf(kb, ks, g + 1, last), c >> 4, nib, eight);
        const x2 = codes16(fmt, rowOf(kb, ks, g + 2, last), c >> 4, nib, eight), x3 = codes16(fmt, rowOf(kb, ks, g + 3, last), c >> 4, nib, eight);
        const lo01 = v128.shuffle<u8>(x0, x1, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        const hi01 = v128.shuffle<u8>(x0, x1, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        const lo23 = v128.shuffle<u8>(x2, x3, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        const hi23 = v128.shuffle<u8>(x2, x3, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        const t = tile + (<usize>g << 4);
        v128.store(t, v128.shuffle<u16>(lo01, lo23, 0, 8, 1, 9, 2, 10, 3, 11));
        v128.store(t, v128.shuffle<u16>(lo01, lo23, 4, 12, 5, 13, 6, 14, 7, 15), 16);
        v128.store(t, v128.shuffle<u16>(hi01, hi23, 0, 8, 1, 9, 2, 10, 3, 11), 32);
        v128.store(t, v128.shuffle<u16>(hi01, hi23, 4, 12, 5, 13, 6, 14, 7, 15), 48);
      }
      const cols = min(16, dc - c), co = <usize>c << 2;
      for (let r = 0; r < nq; r += 2) {
        const two = r + 1 < nq;
        const nk = visible(two ? r + 1 : r, qPos0, qGroup, kpos, nb);
        if (nk == 0) continue;
        const sa = scratch + <usize>r * ROW_BYTES, acc0 = acc + <usize>r * accS + co;
        dotValues(sa, sa + ROW_BYTES, tile, (nk + 3) & ~3, acc0, acc0 + accS, cols, two);
      }
    }
  }
}

// One function per format: the format's branches fold away in each.
function blockDot8(q: usize, qStride: i32, nq: i32, qPos0: i32, qGroup: i32, dc: i32, dr: i32, k: usize, kStride: i32, n: i32,
                   kPos0: i32, scale: f32, m: usize, l: usize, acc: usize, accStride: i32, scratch: usize): void {
  blockDot(INT8, q, qStride, nq, qPos0, qGroup, dc, dr, k, kStride, n, kPos0, scale, m, l, acc, accStride, scratch);
}
function blockDot4(q: usize, qStride: i32, nq: i32, qPos0: i32, qGroup: i32, dc: i32, dr: i32, k: usize, kStride: i32, n: i32,
                   kPos0: i32, scale: f32, m: usize, l: usize, acc: usize, accStride: i32, scratch: usize): void {
  blockDot(INT4, q, qStride, nq, qPos0, qGroup, dc, dr, k, kStride, n, kPos0, scale, m, l, acc, accStride, scratch);
}
