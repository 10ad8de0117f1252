// npm run bench [-- --quick]: kernel throughput beside same-run probes of this machine's peak and
// bandwidth, and decode time per token of MLA vs MHA/GQA/MQA at several contexts.
// Writes bench/results/latest.json and bench/results/latest.md, and prints the table.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { chooseBuild, type SimdBuild } from '../src/wasm.js';
import { benchDecode, type DecodeRow } from './decode.js';
import { benchKernels } from './kernels.js';

const quick = process.argv.includes('--quick');
const log = (s: string) => console.error(s);

const builds: SimdBuild[] = ['simd', 'relaxed'];
const best = chooseBuild('auto');
const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, Node ${process.version}`;
log(`mla-wasm bench on ${machine}${quick ? ' (quick)' : ''}`);

const kernels = [];
for (const build of builds) {
  log(`kernels, ${build} build:`);
  kernels.push(await benchKernels({ build, quick }));
}

const contexts = quick ? [256, 1024] : [512, 2048, 8192];
log(`decode, ${best} build, contexts ${contexts.join(', ')}:`);
const decode: DecodeRow[] = await benchDecode(best, contexts, log);

const result = { date: new Date().toISOString(), machine, quick, kernels, decodeBuild: best, decode };

const md: string[] = [];
md.push(`Machine: ${machine}. Date: ${result.date.slice(0, 10)}. Command: \`npm run bench${quick ? ' -- --quick' : ''}\`.`, '');
md.push('| build | kernel | shape M×K×N | measured | same-run probe | ratio | note |', '|---|---|---|---|---|---|---|');
for (const k of kernels) {
  for (const r of k.rows) {
    const measured = r.gflops !== undefined ? `${r.gflops.toFixed(1)} GFLOP/s` : `${r.gbs!.toFixed(1)} GB/s`;
    const probe = r.gflops !== undefined ? `peak ${k.peakGflops.toFixed(1)} GFLOP/s` : `DRAM ${k.dramGBs.toFixed(1)} GB/s`;
    md.push(`| ${k.build} | ${r.kernel} | ${r.shape} | ${measured} | ${probe} | ${r.ratio.toFixed(2)} | ${r.note ?? ''} |`);
  }
}
md.push('', `Decode, synthetic model with DeepSeek-V2-Lite attention dims (hidden 2048, 16 heads, kv_lora 512, rope 64, nope 128, v 128), 2 layers, MLP 1408, vocab 1024, ${best} build, one thread; ms per token (median):`, '');
md.push(`| variant | cache B/token | ${contexts.map((c) => `ctx ${c}`).join(' | ')} |`, `|---|---|${contexts.map(() => '---').join('|')}|`);
for (const v of [...new Set(decode.map((r) => r.variant))]) {
  const rows = decode.filter((r) => r.variant === v);
  md.push(`| ${v} | ${rows[0].cacheBytesPerToken} | ${rows.map((r) => r.msPerToken.toFixed(2)).join(' | ')} |`);
}
const table = md.join('\n');
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/latest.json', JSON.stringify(result, null, 2) + '\n');
writeFileSync('bench/results/latest.md', table + '\n');
console.log(table);
