// Online-softmax (streaming) attention. The host calls attn_init once, then
// attn_block for each block of keys (any number of calls, any block sizes),
// then attn_finish. The running max m, running sum l and the unnormalised
// accumulator acc live in host memory, so memory does not grow with context.
//
// Keys come in two parts so that MLA's shared rotary key needs no copying:
// key b = [k1 row b (dk1 values) ; k2 row b (dk2 values)], query r is dk1 + dk2
// contiguous values. dk2 may be 0 (ordinary attention).

/** Scratch bytes attn_block needs for nq queries. */
export function attn_scratch_bytes(nq: i32): i32 {
  return 0;
}

/** m[r] = -inf, l[r] = 0, acc row r (dv values at acc + r·accStride·4) = 0, for r < nq. */
export function attn_init(m: usize, l: usize, acc: usize, nq: i32, dv: i32, accStride: i32): void {
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
}

/** out row r (out + r·outStride·4) = acc row r / l[r], for r < nq. out may equal acc. */
export function attn_finish(l: usize, acc: usize, accStride: i32, nq: i32, dv: i32,
                            out: usize, outStride: i32): void {
}
