// Bitwise A/B of kernel outputs between two builds' kernels-simd.wasm / kernels-relaxed.wasm (a
// change meant to leave results alone, e.g. bench/results/splats-2026-12-06.md): q8 / q4 matvec,
// matmul_nt and qgemm, Q4_K / Q6_K, f16 / bf16 products and widen_f16, SwiGLU, attn_block and
// attn_block_latent, on fixed-seed inputs in each build's own memory; exits 1 if any byte differs
// but in floats that are NaN on both sides (their payload is the engine's choice, and Node 20 may
// run one side in Liftoff code and the other optimised).
//
//   node --experimental-wasm-relaxed-simd bench/ab-bits.mjs BASE_DIR NEW_DIR   (also under Deno, Node 24)
import { readFileSync } from 'node:fs';
const [baseDir, newDir] = process.argv.slice(2);
async function inst(file) {
  const memory = new WebAssembly.Memory({ initial: 4096 });
  const { instance } = await WebAssembly.instantiate(readFileSync(file), { env: { memory, abort() { throw new Error('abort'); } } });
  instance.exports._initialize?.();
  return { k: instance.exports, memory };
}
function lcg(seed) { let s = seed >>> 0; return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 4294967296; }; }
// Each case: setup(k, mem) fills memory from a fixed seed and runs; returns [addr, bytes, F if f32s] to compare.
const F = true;
const B = 8 << 20; // heap start
const PREP = B + (80 << 20); // the q8 / q4 products' prep scratch (a build without it ignores the argument)
function cases() {
  const out = [];
  const fillF = (mem, p, n, r, scale = 1) => { const a = new Float32Array(mem.buffer, p, n); for (let i = 0; i < n; i++) a[i] = (r() * 2 - 1) * scale; };
  const fillB = (mem, p, n, r) => { const a = new Uint8Array(mem.buffer, p, n); for (let i = 0; i < n; i++) a[i] = (r() * 256) | 0; };
  for (const [n, kk] of [[37, 2048], [64, 512], [5, 96]]) {
    out.push([`q8/q4 matvec+matmul_nt ${n}x${kk}`, (k, mem) => {
      const r = lcg(n * 7 + kk); const w = B, x = B + 4 * n * kk, xq = x + 4 * kk, xd = xq + kk, q8 = xd + kk, d8 = q8 + n * kk, q4 = d8 + n * kk / 8, d4 = q4 + n * kk, y = d4 + n * kk / 8, c = y + 4 * n;
      fillF(mem, w, n * kk, r); fillF(mem, x, kk, r);
      k.quantize_q8_rows(w, kk, n, kk, q8, d8); k.quantize_q4_rows(w, kk, n, kk, q4, d4); k.quantize_q8_act(x, kk, xq, xd);
      k.matvec_q4(q4, d4, xq, xd, y, n, kk, 0, PREP); k.matvec_q8(q8, d8, xq, xd, y + 4 * n, n, kk, 0, PREP);
      // 3 activation rows: the same x thrice, shifted
      const aq = c + 48 * n, ad = aq + 3 * kk; // after the four 3 × n outputs
      for (let i = 0; i < 3; i++) k.quantize_q8_act(w + 4 * i * kk, kk, aq + i * kk, ad + i * kk / 8);
      k.matmul_nt_q4(aq, ad, q4, d4, c, n, 3, kk, n, 0, PREP);
      k.matmul_nt_q8(aq, ad, q8, d8, c + 12 * n, n, 3, kk, n, 0, PREP);
      const pack = B + (64 << 20);
      k.qgemm_q4(aq, ad, q4, d4, c + 24 * n, n, 3, kk, n, pack);
      k.qgemm_q8(aq, ad, q8, d8, c + 36 * n, n, 3, kk, n, pack);
      return [[y, 8 * n, F], [c, 48 * n, F], [xq, kk + kk / 8]];
    }]);
  }
  for (const [n, kk, m] of [[40, 2048, 1], [7, 512, 2], [3, 256, 1]]) {
    out.push([`q4k/q6k ${n}x${kk} m${m}`, (k, mem) => {
      const r = lcg(n * 13 + kk + m); const x = B, aq = x + 4 * m * kk, ar = aq + m * kk, w4 = ar + m * (kk / 256) * 36 + 64, w6 = w4 + n * kk / 256 * 144, c = w6 + n * kk / 256 * 210;
      fillF(mem, x, m * kk, r);
      for (let i = 0; i < m; i++) k.quantize_q8k_act(x + 4 * i * kk, kk, aq + i * kk, ar + i * (kk / 256) * 36);
      fillB(mem, w4, n * kk / 256 * 144, r); fillB(mem, w6, n * kk / 256 * 210, r);
      const b4 = new Uint8Array(mem.buffer, w4), b6 = new Uint8Array(mem.buffer, w6);
      for (let b = 0; b < n * kk / 256; b++) { b4[b * 144 + 1] = 0x18; b4[b * 144 + 3] = 0x18; b6[b * 210 + 209] = 0x18; }
      k.matmul_nt_q4k(aq, ar, w4, c, n, m, kk, n, 0);
      k.matmul_nt_q6k(aq, ar, w6, c + 4 * m * n, n, m, kk, n, 0);
      return [[c, 8 * m * n, F], [aq, m * kk], [ar, m * (kk / 256) * 36]];
    }]);
  }
  for (const [n, kk, special] of [[37, 2048, false], [6, 77, false], [5, 64, true]]) {
    out.push([`${special ? 'bf16 inf/NaN' : 'f16/bf16'} matvec+matmul_nt+widen ${n}x${kk}`, (k, mem) => {
      const r = lcg(n + kk * 3); const wh = B, x = wh + 2 * n * kk + 64, y = x + 4 * 3 * kk, c = y + 8 * n, wv = c + 4 * 3 * n * 2;
      const h = new Uint16Array(mem.buffer, wh, n * kk);
      // Finite f16 (every class: subnormals, ±0) for f16, whose matrices hold no inf or NaN (the
      // loader rejects them); bf16 takes anything. NaN results may differ in payload when fused
      // multiply-adds take their operands in another order.
      for (let i = 0; i < h.length; i++) { h[i] = (r() * 65536) & 0xffff; if (!special && (h[i] & 0x7c00) === 0x7c00) h[i] &= 0xbfff; }
      fillF(mem, x, 3 * kk, r);
      k.matvec_bf16(wh, kk, x, y + 4 * n, n, kk, 0);
      k.matmul_nt_bf16(x, kk, wh, kk, c + 12 * n, n, 3, kk, n, 0);
      if (special) return [[y + 4 * n, 4 * n, F], [c + 12 * n, 12 * n, F]];
      k.matvec_f16(wh, kk, x, y, n, kk, 0);
      k.matmul_nt_f16(x, kk, wh, kk, c, n, 3, kk, n, 0);
      k.widen_f16(wh, wv, n * kk);
      return [[y, 8 * n, F], [c, 24 * n, F], [wv, 4 * n * kk, F]];
    }]);
  }
  out.push(['swiglu', (k, mem) => {
    const r = lcg(5); const n = 1003, g = B, o = B + 8 * n * 3 + 64;
    const a = new Float32Array(mem.buffer, g, 2 * n * 3);
    for (let i = 0; i < a.length; i++) a[i] = (r() * 2 - 1) * (i % 7 === 0 ? 120 : 12);
    a[3] = Infinity; a[4] = -Infinity; a[5] = NaN; a[6] = -0; a[7] = 1e-40;
    k.swiglu(g, 2 * n, o, n, 3, n);
    return [[o, 4 * 3 * n, F]];
  }]);
  for (const [nq, n, qPos0] of [[16, 1000, 999], [5, 300, 290], [3, 77, 76], [1, 130, 129]]) {
    out.push([`attn_block + latent nq${nq} n${n}`, (k, mem) => {
      const dc = 512, dr = 64, lat = dc + dr, scale = 1 / Math.sqrt(lat);
      const rows = B, queries = rows + n * lat * 4, m = queries + nq * lat * 4, l = m + 64 * 4, acc = l + 64 * 4, scratch = acc + nq * dc * 4, res = scratch + k.attn_scratch_bytes(nq) + 64;
      const rv = new Float32Array(mem.buffer, rows, n * lat); for (let i = 0; i < rv.length; i++) rv[i] = Math.sin(i * 0.37) * 0.5 * (1 + (i % 97) / 10);
      const qv = new Float32Array(mem.buffer, queries, nq * lat); for (let i = 0; i < qv.length; i++) qv[i] = Math.cos(i * 0.91) * 0.3 * (1 + (i % 13));
      const outs = [];
      let p = res;
      const run = (call) => { k.attn_init(m, l, acc, nq, dc, dc); call(); call(); k.attn_finish(l, acc, dc, nq, dc, p, dc); outs.push([p, nq * dc * 4, F]); p += nq * dc * 4; };
      run(() => k.attn_block(queries, lat, nq, qPos0, 1, dc, dr, rows, lat, rows + dc * 4, lat, rows, lat, dc, n, 0, scale, m, l, acc, dc, scratch));
      if (k.latent_row_bytes) for (const fmt of [1, 2, 3]) {
        const R = k.latent_row_bytes(fmt, dc, dr), Q = k.latent_query_bytes(fmt, dc, dr);
        const narrow = p + nq * dc * 4 * 4, records = narrow + n * R;
        k.latent_store(fmt, rows, lat, n, dc, dr, narrow, R);
        // bf16 rows take the f32 queries as they are; int8 and int4 take quantised records.
        if (fmt === 1) new Float32Array(mem.buffer, records, nq * lat).set(qv);
        else k.latent_query(queries, lat, nq, dc, dr, records, Q);
        run(() => k.attn_block_latent(fmt, records, Q / 4, nq, qPos0, 1, dc, dr, narrow, R / 4, n, 0, scale, m, l, acc, dc, scratch));
      }
      return outs;
    }]);
  }
  return out;
}
let bad = 0, total = 0, nanCases = 0;
for (const build of ['simd', 'relaxed']) {
  const A = await inst(`${baseDir}/kernels-${build}.wasm`), Bn = await inst(`${newDir}/kernels-${build}.wasm`);
  for (const [name, run] of cases()) {
    const ra = run(A.k, A.memory), rb = run(Bn.k, Bn.memory);
    // Bytes that differ, apart from those of floats (F regions) that are NaN on both sides.
    let diff = 0, words = 0, nanOnly = 0;
    ra.forEach(([p, bytes, isF], i) => {
      const q = rb[i][0], a = new Uint8Array(A.memory.buffer, p, bytes), b = new Uint8Array(Bn.memory.buffer, q, bytes);
      const fa = new DataView(A.memory.buffer, p, bytes), fb = new DataView(Bn.memory.buffer, q, bytes);
      for (let j = 0; j < bytes; j++) {
        if (a[j] === b[j]) continue;
        const w = j & ~3;
        if (isF && Number.isNaN(fa.getFloat32(w, true)) && Number.isNaN(fb.getFloat32(w, true))) nanOnly++;
        else diff++;
      }
      words += bytes;
    });
    total++; if (diff) bad++; else if (nanOnly) nanCases++;
    console.log(`${build.padEnd(8)} ${name.padEnd(40)} ${words} bytes, ${diff} differ${nanOnly ? ` (and ${nanOnly} bytes of floats NaN on both sides)` : ''}`);
  }
}
console.log(`${total - bad - nanCases} identical, ${nanCases} identical but NaN payloads, ${bad} differ`);
process.exit(bad ? 1 : 0);
