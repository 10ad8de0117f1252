// node scripts/run-ts.mjs bench/latent.ts [relaxed|simd] [keys 16384] [rounds 9]
//
// One attention call of absorbed MLA decode at V2-Lite dims (16 heads, d_c 512, d_r 64) over n
// cache rows: attn_block on f32 rows against attn_block_latent on bf16, int8 and int4 rows, interleaved,
// without the rest of a decode step. Reports the median wall and CPU (process.cpuUsage) time: on
// a busy machine the CPU time moves less. Also the largest difference from the f32 output.
import { loadKernels, type SimdBuild } from '../src/internal.js';

const build = (process.argv[2] ?? 'relaxed') as SimdBuild;
const n = Number(process.argv[3] ?? 16384), rounds = Number(process.argv[4] ?? 9);
const { kernels: k, heap } = await loadKernels({ simd: build });
const nq = 16, dc = 512, dr = 64, lat = dc + dr, scale = 1 / Math.sqrt(lat);

const rows = heap.alloc(n * lat * 4), queries = heap.alloc(nq * lat * 4);
heap.f32(rows, n * lat).forEach((_, i, a) => { a[i] = Math.sin(i * 0.37) * 0.5; });
heap.f32(queries, nq * lat).forEach((_, i, a) => { a[i] = Math.cos(i * 0.91) * 0.3; });
const m = heap.alloc(nq * 4), l = heap.alloc(nq * 4), acc = heap.alloc(nq * dc * 4), scratch = heap.alloc(k.attn_scratch_bytes(nq));

/** Narrow rows and query records in format code fmt (1 bf16, 2 int8, 3 int4), and the call over them. */
function latent(fmt: number): () => void {
  const R = k.latent_row_bytes(fmt, dc, dr), Q = k.latent_query_bytes(fmt, dc, dr);
  const narrow = heap.alloc(n * R), records = heap.alloc(nq * Q);
  k.latent_store(fmt, rows, lat, n, dc, dr, narrow, R);
  // bf16 rows take the f32 queries as they are; int8 and int4 take quantised records.
  if (fmt === 1) heap.f32(records, nq * lat).set(heap.f32(queries, nq * lat));
  else k.latent_query(queries, lat, nq, dc, dr, records, Q);
  return () => k.attn_block_latent(fmt, records, Q / 4, nq, n, nq, dc, dr, narrow, R / 4, n, 0, scale, m, l, acc, dc, scratch);
}
const sides: [string, () => void][] = [
  ['f32', () => k.attn_block(queries, lat, nq, n, nq, dc, dr, rows, lat, rows + dc * 4, lat, rows, lat, dc, n, 0, scale, m, l, acc, dc, scratch)],
  ['bf16', latent(1)], ['int8', latent(2)], ['int4', latent(3)],
];
const wall: number[][] = sides.map(() => []), cpu: number[][] = sides.map(() => []), outs: Float32Array[] = [];
for (let r = 0; r < rounds; r++) {
  sides.forEach(([, call], i) => {
    k.attn_init(m, l, acc, nq, dc, dc);
    const c0 = process.cpuUsage(), t0 = performance.now();
    call();
    wall[i].push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu[i].push((c.user + c.system) / 1000);
    if (r === 0) { k.attn_finish(l, acc, dc, nq, dc, acc, dc); outs[i] = heap.f32(acc, nq * dc).slice(); }
  });
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
console.log(`attention, ${nq} heads × ${n} keys, d_c ${dc}, d_r ${dr}, ${build} build; ${rounds} rounds, medians`);
console.log('| rows | wall ms | CPU ms | × f32 (CPU) | max |Δ| from f32 / max |f32| |');
console.log('|---|---|---|---|---|');
sides.forEach(([name], i) => {
  let d = 0, big = 0;
  for (let j = 0; j < outs[0].length; j++) { d = Math.max(d, Math.abs(outs[i][j] - outs[0][j])); big = Math.max(big, Math.abs(outs[0][j])); }
  console.log(`| ${name} | ${median(wall[i]).toFixed(2)} | ${median(cpu[i]).toFixed(2)} | ${(median(cpu[0]) / median(cpu[i])).toFixed(2)} | ${(d / big).toExponential(1)} |`);
});
