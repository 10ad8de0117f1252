// Online-softmax (streaming) attention. The host calls attn_init once, then
// attn_block for each block of keys (any number of calls, any block sizes),
// then attn_finish. The running max m, running sum l and the unnormalised
// accumulator acc live in host memory, so memory does not grow with context.
//
// Keys come in two parts so that MLA's shared rotary key needs no copying:
// key b = [k1 row b (dk1 values) ; k2 row b (dk2 values)], query r is dk1 + dk2
// contiguous values. dk2 may be 0 (ordinary attention).
//
// Inside attn_block the keys are taken in sub-blocks of SUB keys. For each sub-block and each
// tile of 4 queries: (1) all scores of the tile, 4 queries × 2 keys (b and b + nk/2) at a time
// (8 SIMD dot products sharing their loads), into scratch; (2) per query, the block max, the
// rescale of the running state and p = exp(s − m) with a vector exp; (3) acc += P · V,
// 4 queries × 8 columns at a time. Queries left over (nq mod 4) go through 2-query versions
// (2 queries × 4 keys, 2 queries × 16 columns), then a last one through 1-query versions.
// Causal masking: keys are in increasing position, so each query sees a prefix of `nv` keys of
// the sub-block; masked keys are never read for a query, their p is exactly 0, and keys masked
// for the whole tile are not read at all.
import { madd, hsum } from "./simd";
import { expSoftmax4 } from "./math";

// @ts-ignore: decorator
@inline const SUB: i32 = 64;
// @ts-ignore: decorator
@inline const ROW_BYTES: usize = <usize>SUB << 2;

/**
 * Queries attn_block takes together (a tile): a split by queries in multiples of this leaves
 * every query in the tile it has in one call, so results do not depend on the split.
 */
export function attn_query_tile(): i32 {
  return 4;
}

/**
 * Bytes per query beyond its score row that attn_block_latent's relaxed int8/int4 path takes:
 * per key of a sub-block its query-bias sum and scale, and a value tile of SUB keys × 16 columns.
 * Per query, so that a split by queries keeps scratch proportional to the queries.
 */
// @ts-ignore: decorator
@inline export const LATENT_SCRATCH: i32 = SUB * 4 * 2 + SUB * 16;

/** Scratch bytes attn_block (and attn_block_latent) needs for nq queries. */
export function attn_scratch_bytes(nq: i32): i32 {
  return nq > 0 ? nq * (SUB * 4 + (ASC_FEATURE_RELAXED_SIMD ? LATENT_SCRATCH : 0)) : 0;
}

/** m[r] = -inf, l[r] = 0, acc row r (dv values at acc + r·accStride·4) = 0, for r < nq. */
export function attn_init(m: usize, l: usize, acc: usize, nq: i32, dv: i32, accStride: i32): void {
  for (let r = 0; r < nq; r++) {
    store<f32>(m + (<usize>r << 2), -Infinity);
    store<f32>(l + (<usize>r << 2), 0);
    if (dv > 0) memory.fill(acc + ((<usize>r * <usize>accStride) << 2), 0, <usize>dv << 2);
  }
}

// ---------------------------------------------------------------------------------------------
// Scores. Each helper writes scale · (q · key) for its queries and keys into the scratch rows
// (row of query j at out + j·ROW_BYTES). A dimension tail (d mod 4) is folded in lane 0 with
// load32_zero, so it shares the vector accumulators.

// @ts-ignore: decorator
@inline function scores4x2(q0: usize, qs: usize, ka1: usize, kb1: usize, ka2: usize, kb2: usize,
                           dk1: i32, dk2: i32, scale: f32, outA: usize, outB: usize): void {
  const q1 = q0 + qs, q2 = q1 + qs, q3 = q2 + qs;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const e1 = <usize>dk1 << 2;
  const e1v = <usize>(dk1 & ~3) << 2;
  let o: usize = 0;
  for (; o < e1v; o += 16) {
    const ka = v128.load(ka1 + o), kb = v128.load(kb1 + o);
    let x = v128.load(q0 + o); a0 = madd(x, ka, a0); b0 = madd(x, kb, b0);
    x = v128.load(q1 + o); a1 = madd(x, ka, a1); b1 = madd(x, kb, b1);
    x = v128.load(q2 + o); a2 = madd(x, ka, a2); b2 = madd(x, kb, b2);
    x = v128.load(q3 + o); a3 = madd(x, ka, a3); b3 = madd(x, kb, b3);
  }
  for (; o < e1; o += 4) {
    const ka = v128.load32_zero(ka1 + o), kb = v128.load32_zero(kb1 + o);
    let x = v128.load32_zero(q0 + o); a0 = madd(x, ka, a0); b0 = madd(x, kb, b0);
    x = v128.load32_zero(q1 + o); a1 = madd(x, ka, a1); b1 = madd(x, kb, b1);
    x = v128.load32_zero(q2 + o); a2 = madd(x, ka, a2); b2 = madd(x, kb, b2);
    x = v128.load32_zero(q3 + o); a3 = madd(x, ka, a3); b3 = madd(x, kb, b3);
  }
  if (dk2 > 0) {
    const p0 = q0 + e1, p1 = q1 + e1, p2 = q2 + e1, p3 = q3 + e1;
    const e2 = <usize>dk2 << 2;
    const e2v = <usize>(dk2 & ~3) << 2;
    o = 0;
    for (; o < e2v; o += 16) {
      const ka = v128.load(ka2 + o), kb = v128.load(kb2 + o);
      let x = v128.load(p0 + o); a0 = madd(x, ka, a0); b0 = madd(x, kb, b0);
      x = v128.load(p1 + o); a1 = madd(x, ka, a1); b1 = madd(x, kb, b1);
      x = v128.load(p2 + o); a2 = madd(x, ka, a2); b2 = madd(x, kb, b2);
      x = v128.load(p3 + o); a3 = madd(x, ka, a3); b3 = madd(x, kb, b3);
    }
    for (; o < e2; o += 4) {
      const ka = v128.load32_zero(ka2 + o), kb = v128.load32_zero(kb2 + o);
      let x = v128.load32_zero(p0 + o); a0 = madd(x, ka, a0); b0 = madd(x, kb, b0);
      x = v128.load32_zero(p1 + o); a1 = madd(x, ka, a1); b1 = madd(x, kb, b1);
      x = v128.load32_zero(p2 + o); a2 = madd(x, ka, a2); b2 = madd(x, kb, b2);
      x = v128.load32_zero(p3 + o); a3 = madd(x, ka, a3); b3 = madd(x, kb, b3);
    }
  }
  store<f32>(outA, hsum(a0) * scale); store<f32>(outB, hsum(b0) * scale);
  store<f32>(outA + ROW_BYTES, hsum(a1) * scale); store<f32>(outB + ROW_BYTES, hsum(b1) * scale);
  store<f32>(outA + 2 * ROW_BYTES, hsum(a2) * scale); store<f32>(outB + 2 * ROW_BYTES, hsum(b2) * scale);
  store<f32>(outA + 3 * ROW_BYTES, hsum(a3) * scale); store<f32>(outB + 3 * ROW_BYTES, hsum(b3) * scale);
}

// @ts-ignore: decorator
@inline function scores4x1(q0: usize, qs: usize, ka1: usize, ka2: usize,
                           dk1: i32, dk2: i32, scale: f32, out: usize): void {
  const q1 = q0 + qs, q2 = q1 + qs, q3 = q2 + qs;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const e1 = <usize>dk1 << 2;
  const e1v = <usize>(dk1 & ~3) << 2;
  let o: usize = 0;
  for (; o < e1v; o += 16) {
    const ka = v128.load(ka1 + o);
    a0 = madd(v128.load(q0 + o), ka, a0); a1 = madd(v128.load(q1 + o), ka, a1);
    a2 = madd(v128.load(q2 + o), ka, a2); a3 = madd(v128.load(q3 + o), ka, a3);
  }
  for (; o < e1; o += 4) {
    const ka = v128.load32_zero(ka1 + o);
    a0 = madd(v128.load32_zero(q0 + o), ka, a0); a1 = madd(v128.load32_zero(q1 + o), ka, a1);
    a2 = madd(v128.load32_zero(q2 + o), ka, a2); a3 = madd(v128.load32_zero(q3 + o), ka, a3);
  }
  if (dk2 > 0) {
    const p0 = q0 + e1, p1 = q1 + e1, p2 = q2 + e1, p3 = q3 + e1;
    const e2 = <usize>dk2 << 2;
    const e2v = <usize>(dk2 & ~3) << 2;
    o = 0;
    for (; o < e2v; o += 16) {
      const ka = v128.load(ka2 + o);
      a0 = madd(v128.load(p0 + o), ka, a0); a1 = madd(v128.load(p1 + o), ka, a1);
      a2 = madd(v128.load(p2 + o), ka, a2); a3 = madd(v128.load(p3 + o), ka, a3);
    }
    for (; o < e2; o += 4) {
      const ka = v128.load32_zero(ka2 + o);
      a0 = madd(v128.load32_zero(p0 + o), ka, a0); a1 = madd(v128.load32_zero(p1 + o), ka, a1);
      a2 = madd(v128.load32_zero(p2 + o), ka, a2); a3 = madd(v128.load32_zero(p3 + o), ka, a3);
    }
  }
  store<f32>(out, hsum(a0) * scale);
  store<f32>(out + ROW_BYTES, hsum(a1) * scale);
  store<f32>(out + 2 * ROW_BYTES, hsum(a2) * scale);
  store<f32>(out + 3 * ROW_BYTES, hsum(a3) * scale);
}

/** Two queries (q0, q0 + qs) against `nk` keys, 4 at a time; query j's scores to out + j·ROW_BYTES. */
// @ts-ignore: decorator
@inline function scores2(q0: usize, qs: usize, k1b: usize, k1s: usize, k2b: usize, k2s: usize,
                         dk1: i32, dk2: i32, scale: f32, nk: i32, out: usize): void {
  const q1 = q0 + qs;
  const e1 = <usize>dk1 << 2;
  const e1v = <usize>(dk1 & ~3) << 2;
  const e2 = <usize>dk2 << 2;
  const e2v = <usize>(dk2 & ~3) << 2;
  const p0 = q0 + e1, p1 = q1 + e1;
  let b = 0;
  for (; b + 4 <= nk; b += 4) {
    const ka = k1b + <usize>b * k1s, kb = ka + k1s, kc = kb + k1s, kd = kc + k1s;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
    let o: usize = 0;
    for (; o < e1v; o += 16) {
      const x = v128.load(q0 + o), y = v128.load(q1 + o);
      let k = v128.load(ka + o); a0 = madd(x, k, a0); c0 = madd(y, k, c0);
      k = v128.load(kb + o); a1 = madd(x, k, a1); c1 = madd(y, k, c1);
      k = v128.load(kc + o); a2 = madd(x, k, a2); c2 = madd(y, k, c2);
      k = v128.load(kd + o); a3 = madd(x, k, a3); c3 = madd(y, k, c3);
    }
    for (; o < e1; o += 4) {
      const x = v128.load32_zero(q0 + o), y = v128.load32_zero(q1 + o);
      let k = v128.load32_zero(ka + o); a0 = madd(x, k, a0); c0 = madd(y, k, c0);
      k = v128.load32_zero(kb + o); a1 = madd(x, k, a1); c1 = madd(y, k, c1);
      k = v128.load32_zero(kc + o); a2 = madd(x, k, a2); c2 = madd(y, k, c2);
      k = v128.load32_zero(kd + o); a3 = madd(x, k, a3); c3 = madd(y, k, c3);
    }
    if (dk2 > 0) {
      const ra = k2b + <usize>b * k2s, rb = ra + k2s, rc = rb + k2s, rd = rc + k2s;
      o = 0;
      for (; o < e2v; o += 16) {
        const x = v128.load(p0 + o), y = v128.load(p1 + o);
        let k = v128.load(ra + o); a0 = madd(x, k, a0); c0 = madd(y, k, c0);
        k = v128.load(rb + o); a1 = madd(x, k, a1); c1 = madd(y, k, c1);
        k = v128.load(rc + o); a2 = madd(x, k, a2); c2 = madd(y, k, c2);
        k = v128.load(rd + o); a3 = madd(x, k, a3); c3 = madd(y, k, c3);
      }
      for (; o < e2; o += 4) {
        const x = v128.load32_zero(p0 + o), y = v128.load32_zero(p1 + o);
        let k = v128.load32_zero(ra + o); a0 = madd(x, k, a0); c0 = madd(y, k, c0);
        k = v128.load32_zero(rb + o); a1 = madd(x, k, a1); c1 = madd(y, k, c1);
        k = v128.load32_zero(rc + o); a2 = madd(x, k, a2); c2 = madd(y, k, c2);
        k = v128.load32_zero(rd + o); a3 = madd(x, k, a3); c3 = madd(y, k, c3);
      }
    }
    const ob = out + (<usize>b << 2);
    store<f32>(ob, hsum(a0) * scale); store<f32>(ob, hsum(a1) * scale, 4);
    store<f32>(ob, hsum(a2) * scale, 8); store<f32>(ob, hsum(a3) * scale, 12);
    store<f32>(ob + ROW_BYTES, hsum(c0) * scale); store<f32>(ob + ROW_BYTES, hsum(c1) * scale, 4);
    store<f32>(ob + ROW_BYTES, hsum(c2) * scale, 8); store<f32>(ob + ROW_BYTES, hsum(c3) * scale, 12);
  }
  for (; b < nk; b++) {
    const ka = k1b + <usize>b * k1s;
    let a0 = f32x4.splat(0), c0 = f32x4.splat(0);
    let o: usize = 0;
    for (; o < e1v; o += 16) {
      const k = v128.load(ka + o);
      a0 = madd(v128.load(q0 + o), k, a0); c0 = madd(v128.load(q1 + o), k, c0);
    }
    for (; o < e1; o += 4) {
      const k = v128.load32_zero(ka + o);
      a0 = madd(v128.load32_zero(q0 + o), k, a0); c0 = madd(v128.load32_zero(q1 + o), k, c0);
    }
    if (dk2 > 0) {
      const ra = k2b + <usize>b * k2s;
      o = 0;
      for (; o < e2v; o += 16) {
        const k = v128.load(ra + o);
        a0 = madd(v128.load(p0 + o), k, a0); c0 = madd(v128.load(p1 + o), k, c0);
      }
      for (; o < e2; o += 4) {
        const k = v128.load32_zero(ra + o);
        a0 = madd(v128.load32_zero(p0 + o), k, a0); c0 = madd(v128.load32_zero(p1 + o), k, c0);
      }
    }
    const ob = out + (<usize>b << 2);
    store<f32>(ob, hsum(a0) * scale);
    store<f32>(ob + ROW_BYTES, hsum(c0) * scale);
  }
}

/** One query against `nk` keys (4 at a time), scores to out[0..nk). */
// @ts-ignore: decorator
@inline function scores1(q0: usize, k1b: usize, k1s: usize, k2b: usize, k2s: usize,
                         dk1: i32, dk2: i32, scale: f32, nk: i32, out: usize): void {
  const e1 = <usize>dk1 << 2;
  const e1v = <usize>(dk1 & ~3) << 2;
  const e2 = <usize>dk2 << 2;
  const e2v = <usize>(dk2 & ~3) << 2;
  const p0 = q0 + e1;
  let b = 0;
  for (; b + 4 <= nk; b += 4) {
    const ka = k1b + <usize>b * k1s, kb = ka + k1s, kc = kb + k1s, kd = kc + k1s;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let o: usize = 0;
    for (; o < e1v; o += 16) {
      const x = v128.load(q0 + o);
      a0 = madd(x, v128.load(ka + o), a0); a1 = madd(x, v128.load(kb + o), a1);
      a2 = madd(x, v128.load(kc + o), a2); a3 = madd(x, v128.load(kd + o), a3);
    }
    for (; o < e1; o += 4) {
      const x = v128.load32_zero(q0 + o);
      a0 = madd(x, v128.load32_zero(ka + o), a0); a1 = madd(x, v128.load32_zero(kb + o), a1);
      a2 = madd(x, v128.load32_zero(kc + o), a2); a3 = madd(x, v128.load32_zero(kd + o), a3);
    }
    if (dk2 > 0) {
      const ra = k2b + <usize>b * k2s, rb = ra + k2s, rc = rb + k2s, rd = rc + k2s;
      o = 0;
      for (; o < e2v; o += 16) {
        const x = v128.load(p0 + o);
        a0 = madd(x, v128.load(ra + o), a0); a1 = madd(x, v128.load(rb + o), a1);
        a2 = madd(x, v128.load(rc + o), a2); a3 = madd(x, v128.load(rd + o), a3);
      }
      for (; o < e2; o += 4) {
        const x = v128.load32_zero(p0 + o);
        a0 = madd(x, v128.load32_zero(ra + o), a0); a1 = madd(x, v128.load32_zero(rb + o), a1);
        a2 = madd(x, v128.load32_zero(rc + o), a2); a3 = madd(x, v128.load32_zero(rd + o), a3);
      }
    }
    const ob = out + (<usize>b << 2);
    store<f32>(ob, hsum(a0) * scale); store<f32>(ob, hsum(a1) * scale, 4);
    store<f32>(ob, hsum(a2) * scale, 8); store<f32>(ob, hsum(a3) * scale, 12);
  }
  for (; b < nk; b++) {
    const ka = k1b + <usize>b * k1s;
    let a0 = f32x4.splat(0);
    let o: usize = 0;
    for (; o < e1v; o += 16) a0 = madd(v128.load(q0 + o), v128.load(ka + o), a0);
    for (; o < e1; o += 4) a0 = madd(v128.load32_zero(q0 + o), v128.load32_zero(ka + o), a0);
    if (dk2 > 0) {
      const ra = k2b + <usize>b * k2s;
      o = 0;
      for (; o < e2v; o += 16) a0 = madd(v128.load(p0 + o), v128.load(ra + o), a0);
      for (; o < e2; o += 4) a0 = madd(v128.load32_zero(p0 + o), v128.load32_zero(ra + o), a0);
    }
    store<f32>(out + (<usize>b << 2), hsum(a0) * scale);
  }
}

// ---------------------------------------------------------------------------------------------
// Softmax step for one query: scores in row[0..nv) (nv ≥ 1 valid keys); writes p into
// row[0..pEnd) (pEnd = the tile's key count rounded up to 4, p = 0 past nv), updates m, l and
// rescales the accumulator row.

/**
 * i32x4(0, 1, 2, 3) and f32 −inf for softmaxRow, loaded once per row (see NIBBLES8 in simd.ts):
 * newer V8 rebuilds a constant vector before every use in a loop.
 */
const IOTA: usize = memory.data<i32>([0, 1, 2, 3]);
const NEG_INF: usize = memory.data<f32>([-Infinity]);

// @ts-ignore: decorator
@inline export function softmaxRow(row: usize, nv: i32, pEnd: i32, mp: usize, lp: usize,
                            accRow: usize, dv: i32): void {
  const iota = v128.load(IOTA);
  const ninf = v128.load32_splat(NEG_INF);
  let vmax = ninf;
  for (let c = 0; c < nv; c += 4) {
    const keep = i32x4.lt_s(iota, i32x4.splat(nv - c));
    vmax = f32x4.pmax(vmax, v128.bitselect(v128.load(row + (<usize>c << 2)), ninf, keep));
  }
  const bmax = max(max(f32x4.extract_lane(vmax, 0), f32x4.extract_lane(vmax, 1)),
                   max(f32x4.extract_lane(vmax, 2), f32x4.extract_lane(vmax, 3)));
  const mOld = load<f32>(mp);
  const mNew = max(mOld, bmax);
  if (mNew == -Infinity) {
    // Only with −inf scores (non-finite inputs): nothing to add; keep p = 0.
    memory.fill(row, 0, <usize>pEnd << 2);
    return;
  }
  const mv = f32x4.splat(mNew);
  let psum = f32x4.splat(0);
  for (let c = 0; c < pEnd; c += 4) {
    const o = <usize>c << 2;
    const keep = i32x4.lt_s(iota, i32x4.splat(nv - c));
    const p = v128.and(expSoftmax4(f32x4.sub(v128.load(row + o), mv)), keep);
    v128.store(row + o, p);
    psum = f32x4.add(psum, p);
  }
  // alpha = exp(mOld − mNew): 1 when the max did not move, 0 on the first keys (mOld = −inf).
  let lNew = hsum(psum);
  if (mNew != mOld) {
    const alpha = f32x4.extract_lane(expSoftmax4(f32x4.splat(mOld - mNew)), 0);
    lNew += load<f32>(lp) * alpha;
    const av = f32x4.splat(alpha);
    let i = 0;
    for (; i + 4 <= dv; i += 4) {
      const o = <usize>i << 2;
      v128.store(accRow + o, f32x4.mul(v128.load(accRow + o), av));
    }
    for (; i < dv; i++) {
      const o = <usize>i << 2;
      store<f32>(accRow + o, load<f32>(accRow + o) * alpha);
    }
    store<f32>(mp, mNew);
  } else {
    lNew += load<f32>(lp);
  }
  store<f32>(lp, lNew);
}

// ---------------------------------------------------------------------------------------------
// acc += P · V. P rows are scratch rows (p of key b at row + 4b), nk keys.

// @ts-ignore: decorator
@inline function pv4(s0: usize, acc0: usize, accS: usize, vb: usize, vs: usize, dv: i32, nk: i32): void {
  const s1 = s0 + ROW_BYTES, s2 = s1 + ROW_BYTES, s3 = s2 + ROW_BYTES;
  const c1 = acc0 + accS, c2 = c1 + accS, c3 = c2 + accS;
  const kEnd = <usize>nk << 2;
  let c = 0;
  for (; c + 8 <= dv; c += 8) {
    const o = <usize>c << 2;
    let a0 = v128.load(acc0 + o), b0 = v128.load(acc0 + o, 16);
    let a1 = v128.load(c1 + o), b1 = v128.load(c1 + o, 16);
    let a2 = v128.load(c2 + o), b2 = v128.load(c2 + o, 16);
    let a3 = v128.load(c3 + o), b3 = v128.load(c3 + o, 16);
    let vp = vb + o;
    for (let k: usize = 0; k < kEnd; k += 4, vp += vs) {
      const v0 = v128.load(vp), v1 = v128.load(vp, 16);
      let p = v128.load32_splat(s0 + k); a0 = madd(p, v0, a0); b0 = madd(p, v1, b0);
      p = v128.load32_splat(s1 + k); a1 = madd(p, v0, a1); b1 = madd(p, v1, b1);
      p = v128.load32_splat(s2 + k); a2 = madd(p, v0, a2); b2 = madd(p, v1, b2);
      p = v128.load32_splat(s3 + k); a3 = madd(p, v0, a3); b3 = madd(p, v1, b3);
    }
    v128.store(acc0 + o, a0); v128.store(acc0 + o, b0, 16);
    v128.store(c1 + o, a1); v128.store(c1 + o, b1, 16);
    v128.store(c2 + o, a2); v128.store(c2 + o, b2, 16);
    v128.store(c3 + o, a3); v128.store(c3 + o, b3, 16);
  }
  if (c + 4 <= dv) {
    const o = <usize>c << 2;
    let a0 = v128.load(acc0 + o), a1 = v128.load(c1 + o);
    let a2 = v128.load(c2 + o), a3 = v128.load(c3 + o);
    let vp = vb + o;
    for (let k: usize = 0; k < kEnd; k += 4, vp += vs) {
      const v0 = v128.load(vp);
      a0 = madd(v128.load32_splat(s0 + k), v0, a0); a1 = madd(v128.load32_splat(s1 + k), v0, a1);
      a2 = madd(v128.load32_splat(s2 + k), v0, a2); a3 = madd(v128.load32_splat(s3 + k), v0, a3);
    }
    v128.store(acc0 + o, a0); v128.store(c1 + o, a1);
    v128.store(c2 + o, a2); v128.store(c3 + o, a3);
    c += 4;
  }
  // Columns left (dv mod 4): p of 4 queries in the lanes of one vector per key.
  for (; c < dv; c++) {
    const o = <usize>c << 2;
    let a = f32x4(load<f32>(acc0 + o), load<f32>(c1 + o), load<f32>(c2 + o), load<f32>(c3 + o));
    let vp = vb + o;
    for (let k: usize = 0; k < kEnd; k += 4, vp += vs) {
      const p = f32x4(load<f32>(s0 + k), load<f32>(s1 + k), load<f32>(s2 + k), load<f32>(s3 + k));
      a = madd(p, v128.load32_splat(vp), a);
    }
    store<f32>(acc0 + o, f32x4.extract_lane(a, 0)); store<f32>(c1 + o, f32x4.extract_lane(a, 1));
    store<f32>(c2 + o, f32x4.extract_lane(a, 2)); store<f32>(c3 + o, f32x4.extract_lane(a, 3));
  }
}

/** acc += P · V for two queries (p rows s0, s0 + ROW_BYTES; acc rows acc0, acc0 + accS). */
// @ts-ignore: decorator
@inline function pv2(s0: usize, acc0: usize, accS: usize, vb: usize, vs: usize, dv: i32, nk: i32): void {
  const s1 = s0 + ROW_BYTES, c1 = acc0 + accS;
  const kEnd = <usize>nk << 2;
  let c = 0;
  for (; c + 16 <= dv; c += 16) {
    const o = <usize>c << 2;
    let a0 = v128.load(acc0 + o), a1 = v128.load(acc0 + o, 16), a2 = v128.load(acc0 + o, 32), a3 = v128.load(acc0 + o, 48);
    let b0 = v128.load(c1 + o), b1 = v128.load(c1 + o, 16), b2 = v128.load(c1 + o, 32), b3 = v128.load(c1 + o, 48);
    let vp = vb + o;
    for (let k: usize = 0; k < kEnd; k += 4, vp += vs) {
      const p = v128.load32_splat(s0 + k), r = v128.load32_splat(s1 + k);
      let v = v128.load(vp); a0 = madd(p, v, a0); b0 = madd(r, v, b0);
      v = v128.load(vp, 16); a1 = madd(p, v, a1); b1 = madd(r, v, b1);
      v = v128.load(vp, 32); a2 = madd(p, v, a2); b2 = madd(r, v, b2);
      v = v128.load(vp, 48); a3 = madd(p, v, a3); b3 = madd(r, v, b3);
    }
    v128.store(acc0 + o, a0); v128.store(acc0 + o, a1, 16); v128.store(acc0 + o, a2, 32); v128.store(acc0 + o, a3, 48);
    v128.store(c1 + o, b0); v128.store(c1 + o, b1, 16); v128.store(c1 + o, b2, 32); v128.store(c1 + o, b3, 48);
  }
  for (; c + 4 <= dv; c += 4) {
    const o = <usize>c << 2;
    let a0 = v128.load(acc0 + o), b0 = v128.load(c1 + o);
    let vp = vb + o;
    for (let k: usize = 0; k < kEnd; k += 4, vp += vs) {
      const v = v128.load(vp);
      a0 = madd(v128.load32_splat(s0 + k), v, a0); b0 = madd(v128.load32_splat(s1 + k), v, b0);
    }
    v128.store(acc0 + o, a0); v128.store(c1 + o, b0);
  }
  for (; c < dv; c++) {
    const o = <usize>c << 2;
    let a = load<f32>(acc0 + o), b = load<f32>(c1 + o);
    let vp = vb + o;
    for (let k: usize = 0; k < kEnd; k += 4, vp += vs) {
      const v = load<f32>(vp);
      a += load<f32>(s0 + k) * v; b += load<f32>(s1 + k) * v;
    }
    store<f32>(acc0 + o, a); store<f32>(c1 + o, b);
  }
}

// @ts-ignore: decorator
@inline function pv1(s0: usize, acc0: usize, vb: usize, vs: usize, dv: i32, nk: i32): void {
  const kEnd = <usize>nk << 2;
  let c = 0;
  for (; c + 16 <= dv; c += 16) {
    const o = <usize>c << 2;
    let a0 = v128.load(acc0 + o), a1 = v128.load(acc0 + o, 16);
    let a2 = v128.load(acc0 + o, 32), a3 = v128.load(acc0 + o, 48);
    let vp = vb + o;
    for (let k: usize = 0; k < kEnd; k += 4, vp += vs) {
      const p = v128.load32_splat(s0 + k);
      a0 = madd(p, v128.load(vp), a0); a1 = madd(p, v128.load(vp, 16), a1);
      a2 = madd(p, v128.load(vp, 32), a2); a3 = madd(p, v128.load(vp, 48), a3);
    }
    v128.store(acc0 + o, a0); v128.store(acc0 + o, a1, 16);
    v128.store(acc0 + o, a2, 32); v128.store(acc0 + o, a3, 48);
  }
  for (; c + 4 <= dv; c += 4) {
    const o = <usize>c << 2;
    let a0 = v128.load(acc0 + o);
    let vp = vb + o;
    for (let k: usize = 0; k < kEnd; k += 4, vp += vs) {
      a0 = madd(v128.load32_splat(s0 + k), v128.load(vp), a0);
    }
    v128.store(acc0 + o, a0);
  }
  for (; c < dv; c++) {
    const o = <usize>c << 2;
    let a = load<f32>(acc0 + o);
    let vp = vb + o;
    for (let k: usize = 0; k < kEnd; k += 4, vp += vs) a += load<f32>(s0 + k) * load<f32>(vp);
    store<f32>(acc0 + o, a);
  }
}

/** softmaxRow for a tile of 4 queries (row j at s0 + j·ROW_BYTES sees nv_j keys); a row that sees none gets p = 0. */
// @ts-ignore: decorator
@inline export function softmaxTile(s0: usize, nv0: i32, nv1: i32, nv2: i32, nv3: i32, pEnd: i32, mp: usize, lp: usize,
                                   acc0: usize, accS: usize, dv: i32): void {
  if (nv0 > 0) softmaxRow(s0, nv0, pEnd, mp, lp, acc0, dv);
  else memory.fill(s0, 0, <usize>pEnd << 2);
  if (nv1 > 0) softmaxRow(s0 + ROW_BYTES, nv1, pEnd, mp + 4, lp + 4, acc0 + accS, dv);
  else memory.fill(s0 + ROW_BYTES, 0, <usize>pEnd << 2);
  if (nv2 > 0) softmaxRow(s0 + 2 * ROW_BYTES, nv2, pEnd, mp + 8, lp + 8, acc0 + 2 * accS, dv);
  else memory.fill(s0 + 2 * ROW_BYTES, 0, <usize>pEnd << 2);
  if (nv3 > 0) softmaxRow(s0 + 3 * ROW_BYTES, nv3, pEnd, mp + 12, lp + 12, acc0 + 3 * accS, dv);
  else memory.fill(s0 + 3 * ROW_BYTES, 0, <usize>pEnd << 2);
}

/** How many keys of a sub-block (positions kpos, kpos+1, …; nb keys) query row r sees. */
// @ts-ignore: decorator
@inline export function visible(r: i32, qPos0: i32, qGroup: i32, kpos: i32, nb: i32): i32 {
  const d = <i64>qPos0 + <i64>(r / qGroup) - <i64>kpos + 1;
  return d <= 0 ? 0 : (d >= <i64>nb ? nb : <i32>d);
}

/**
 * Fold a block of n keys/values into the running state of nq queries.
 * Query r: q + r·qStride·4, position qPos0 + r / qGroup (integer division).
 * Key b:   position kPos0 + b; k1 + b·k1Stride·4 (dk1 values), k2 + b·k2Stride·4 (dk2 values).
 * Value b: v + b·vStride·4 (dv values).
 * score = scale · (q · key); keys with position > the query's position are masked (causal).
 * A query whose keys in this block are all masked is left unchanged.
 * scratch: attn_scratch_bytes(nq) bytes.
 */
export function attn_block(q: usize, qStride: i32, nq: i32, qPos0: i32, qGroup: i32,
                           dk1: i32, dk2: i32,
                           k1: usize, k1Stride: i32, k2: usize, k2Stride: i32,
                           v: usize, vStride: i32, dv: i32,
                           n: i32, kPos0: i32, scale: f32,
                           m: usize, l: usize, acc: usize, accStride: i32, scratch: usize): void {
  if (n <= 0 || nq <= 0) return;
  if (dk1 < 0) dk1 = 0;
  if (dk2 < 0) dk2 = 0;
  const qs = <usize>qStride << 2;
  const k1s = <usize>k1Stride << 2;
  const k2s = <usize>k2Stride << 2;
  const vs = <usize>vStride << 2;
  const accS = <usize>accStride << 2;
  for (let b0 = 0; b0 < n; b0 += SUB) {
    const nb = min(SUB, n - b0);
    const kpos = kPos0 + b0;
    const k1b = k1 + <usize>b0 * k1s;
    const k2b = k2 + <usize>b0 * k2s;
    const vb = v + <usize>b0 * vs;
    let r = 0;
    // Tiles of 4 queries.
    for (; r + 4 <= nq; r += 4) {
      const nv0 = visible(r, qPos0, qGroup, kpos, nb);
      const nv1 = visible(r + 1, qPos0, qGroup, kpos, nb);
      const nv2 = visible(r + 2, qPos0, qGroup, kpos, nb);
      const nv3 = visible(r + 3, qPos0, qGroup, kpos, nb);
      const nk = max(max(nv0, nv1), max(nv2, nv3));
      if (nk == 0) continue;
      const q0 = q + <usize>r * qs;
      const s0 = scratch + <usize>r * ROW_BYTES;
      // Keys b and b + h together: two streams in different pages. When the block comes from
      // DRAM, the hardware prefetchers keep up better with two streams than with one twice as
      // fast (measured: decode at 16k keys ~10% faster; the same from L3, and for prefill).
      const h = nk >> 1, hs = <usize>h << 2;
      for (let b = 0; b < h; b++) {
        const ka1 = k1b + <usize>b * k1s, ka2 = k2b + <usize>b * k2s, out = s0 + (<usize>b << 2);
        scores4x2(q0, qs, ka1, ka1 + <usize>h * k1s, ka2, ka2 + <usize>h * k2s, dk1, dk2, scale, out, out + hs);
      }
      if (nk & 1) {
        const b = nk - 1;
        scores4x1(q0, qs, k1b + <usize>b * k1s, k2b + <usize>b * k2s, dk1, dk2, scale, s0 + (<usize>b << 2));
      }
      const acc0 = acc + <usize>r * accS;
      softmaxTile(s0, nv0, nv1, nv2, nv3, (nk + 3) & ~3, m + (<usize>r << 2), l + (<usize>r << 2), acc0, accS, dv);
      pv4(s0, acc0, accS, vb, vs, dv, nk);
    }
    // Two queries left over (nq mod 4 ≥ 2): a tile of two.
    if (r + 2 <= nq) {
      const nv0 = visible(r, qPos0, qGroup, kpos, nb);
      const nv1 = visible(r + 1, qPos0, qGroup, kpos, nb);
      const nk = max(nv0, nv1);
      if (nk > 0) {
        const s0 = scratch + <usize>r * ROW_BYTES;
        scores2(q + <usize>r * qs, qs, k1b, k1s, k2b, k2s, dk1, dk2, scale, nk, s0);
        const pEnd = (nk + 3) & ~3;
        const acc0 = acc + <usize>r * accS;
        const mp = m + (<usize>r << 2), lp = l + (<usize>r << 2);
        if (nv0 > 0) softmaxRow(s0, nv0, pEnd, mp, lp, acc0, dv);
        else memory.fill(s0, 0, <usize>pEnd << 2);
        if (nv1 > 0) softmaxRow(s0 + ROW_BYTES, nv1, pEnd, mp + 4, lp + 4, acc0 + accS, dv);
        else memory.fill(s0 + ROW_BYTES, 0, <usize>pEnd << 2);
        pv2(s0, acc0, accS, vb, vs, dv, nk);
      }
      r += 2;
    }
    // A last query, alone.
    for (; r < nq; r++) {
      const nv = visible(r, qPos0, qGroup, kpos, nb);
      if (nv == 0) continue;
      const s0 = scratch + <usize>r * ROW_BYTES;
      scores1(q + <usize>r * qs, k1b, k1s, k2b, k2s, dk1, dk2, scale, nv, s0);
      const acc0 = acc + <usize>r * accS;
      softmaxRow(s0, nv, (nv + 3) & ~3, m + (<usize>r << 2), l + (<usize>r << 2), acc0, dv);
      pv1(s0, acc0, vb, vs, dv, nv);
    }
  }
}

/**
 * Fold the state (m2, l2, acc2) of nq queries over some keys into their state (m, l, acc) over
 * other keys: the result is the state over both key sets, to rounding. Lets a long context be
 * split into segments of keys that are processed independently (flash-decoding) and merged in
 * a fixed order. A query whose second state saw no key (m2 = −inf) is left unchanged.
 */
export function attn_merge(m: usize, l: usize, acc: usize, accStride: i32,
                           m2: usize, l2: usize, acc2: usize, acc2Stride: i32, nq: i32, dv: i32): void {
  for (let r = 0; r < nq; r++) {
    const o = <usize>r << 2;
    const mb = load<f32>(m2 + o);
    if (mb == -Infinity) continue;
    const ma = load<f32>(m + o);
    const mNew = max(ma, mb);
    // exp(−inf) = 0: a first state that saw no key contributes nothing.
    const e = expSoftmax4(f32x4(ma - mNew, mb - mNew, 0, 0));
    const alpha = f32x4.extract_lane(e, 0), beta = f32x4.extract_lane(e, 1);
    store<f32>(l + o, load<f32>(l + o) * alpha + load<f32>(l2 + o) * beta);
    store<f32>(m + o, mNew);
    const a = acc + ((<usize>r * <usize>accStride) << 2);
    const b = acc2 + ((<usize>r * <usize>acc2Stride) << 2);
    const av = f32x4.splat(alpha), bv = f32x4.splat(beta);
    let i = 0;
    for (; i + 4 <= dv; i += 4) {
      const c = <usize>i << 2;
      v128.store(a + c, madd(v128.load(b + c), bv, f32x4.mul(v128.load(a + c), av)));
    }
    for (; i < dv; i++) {
      const c = <usize>i << 2;
      store<f32>(a + c, load<f32>(b + c) * beta + load<f32>(a + c) * alpha);
    }
  }
}

/** out row r (out + r·outStride·4) = acc row r / l[r], for r < nq. out may equal acc. */
export function attn_finish(l: usize, acc: usize, accStride: i32, nq: i32, dv: i32,
                            out: usize, outStride: i32): void {
  for (let r = 0; r < nq; r++) {
    const a = acc + ((<usize>r * <usize>accStride) << 2);
    const o = out + ((<usize>r * <usize>outStride) << 2);
    const lr = load<f32>(l + (<usize>r << 2));
    const lv = f32x4.splat(lr);
    let i = 0;
    for (; i + 4 <= dv; i += 4) {
      const b = <usize>i << 2;
      v128.store(o + b, f32x4.div(v128.load(a + b), lv));
    }
    for (; i < dv; i++) {
      const b = <usize>i << 2;
      store<f32>(o + b, load<f32>(a + b) / lr);
    }
  }
}
