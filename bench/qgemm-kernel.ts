// Kernel-level prefill shape (M 128 = one decoder chunk, K 2048, N 2048), one thread, both builds:
// f32 matmul_nt against qgemm_q8 / qgemm_q4 and the unpacked matmul_nt_q8. Every kernel runs once
// per round in turn; CPU time (the machine is shared, so wall time counts others' work), medians,
// "x f32" from the same run. --against DIR adds the qgemm kernels of DIR's kernels-{simd,relaxed}.wasm
// (say, main's build/) to the same rounds, and checks that their outputs equal this build's bit for bit.
//   node scripts/run-ts.mjs bench/qgemm-kernel.ts [--rounds 9] [--against ../main/build]
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { loadKernels, type SimdBuild } from '../src/internal.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const ROUNDS = Number(arg('rounds', '9')), AGAINST = arg('against', '');
const M = 128, KK = 2048, N = 2048, nb = KK / 32;

interface Run { name: string; f: () => void; out: () => Float32Array; cpu: number[] }

/** The kernels of one wasm (this build's when bytes is undefined) on the same data, as runs. */
async function runs(build: SimdBuild, tag: string, bytes: BufferSource | undefined, all: boolean): Promise<Run[]> {
  const k = await loadKernels(bytes ? { wasmBytes: bytes, threads: 1 } : { simd: build, threads: 1 });
  const H = k.heap, K = k.kernels;
  const a = H.alloc(M * KK * 4), w = H.alloc(N * KK * 4), c = H.alloc(M * N * 4);
  const f = H.f32(a, M * KK); for (let i = 0; i < f.length; i++) f[i] = Math.sin(i);
  const g = H.f32(w, N * KK); for (let i = 0; i < g.length; i++) g[i] = Math.cos(i * 1.3);
  const pb = Math.max(K.matmul_pack_bytes(KK, N), K.qgemm_pack_bytes(KK)), pack = H.alloc(pb);
  const wq8 = H.alloc(N * KK), wd = H.alloc(N * nb * 4), wq4 = H.alloc(N * KK / 2), wd4 = H.alloc(N * nb * 4);
  K.quantize_q8_rows(w, KK, N, KK, wq8, wd); K.quantize_q4_rows(w, KK, N, KK, wq4, wd4);
  const aq = H.alloc(M * KK), ad = H.alloc(M * nb * 4);
  for (let i = 0; i < M; i++) K.quantize_q8_act(a + i * KK * 4, KK, aq + i * KK, ad + i * nb * 4);
  const out = () => H.f32(c, M * N).slice();
  const list: [string, () => void][] = [
    ['qgemm_q8', () => K.qgemm_q8(aq, ad, wq8, wd, c, N, M, KK, N, pack)],
    ['qgemm_q4', () => K.qgemm_q4(aq, ad, wq4, wd4, c, N, M, KK, N, pack)],
  ];
  if (all) {
    list.unshift(['f32 matmul_nt', () => K.matmul_nt(a, KK, w, KK, c, N, M, KK, N, pack, false)]);
    list.push(['matmul_nt_q8 (old)', () => K.matmul_nt_q8(aq, ad, wq8, wd, c, N, M, KK, N, false, pack)]); // pack is larger than its prep
  }
  return list.map(([name, f]) => ({ name: `${build} ${tag}${name}`, f, out, cpu: [] }));
}

const builds: SimdBuild[] = ['simd', 'relaxed'];
const all: Run[] = [];
for (const b of builds) {
  const mine = await runs(b, '', undefined, true);
  all.push(...mine);
  if (!AGAINST) continue;
  const theirs = await runs(b, 'against ', new Uint8Array(readFileSync(`${AGAINST}/kernels-${b}.wasm`)), false);
  all.push(...theirs);
  for (const t of theirs) {
    const m = mine.find((r) => r.name === t.name.replace('against ', ''))!;
    m.f(); const x = m.out(); t.f(); const y = t.out();
    const same = x.length === y.length && x.every((v, i) => Object.is(v, y[i]));
    console.log(`${m.name}: ${same ? 'bit-identical to' : 'DIFFERS from'} ${AGAINST}`);
  }
}
const load0 = loadavg();
for (let r = 0; r < ROUNDS; r++) {
  for (const run of all) {
    const t0 = process.cpuUsage();
    run.f();
    const d = process.cpuUsage(t0);
    run.cpu.push((d.user + d.system) / 1000);
  }
}
const med = (x: number[]) => [...x].sort((p, q) => p - q)[x.length >> 1];
console.log(`${ROUNDS} rounds, CPU ms medians; load average before ${load0.map((v) => v.toFixed(1)).join(' ')}, after ${loadavg().map((v) => v.toFixed(1)).join(' ')}`);
for (const b of builds) {
  const f32ms = med(all.find((r) => r.name === `${b} f32 matmul_nt`)!.cpu);
  for (const run of all.filter((r) => r.name.startsWith(`${b} `))) {
    const ms = med(run.cpu);
    console.log(run.name.padEnd(30), ms.toFixed(1), 'ms', (2 * M * KK * N / ms / 1e6).toFixed(1), 'GFLOP/s', (f32ms / ms).toFixed(2), 'x f32');
  }
}
