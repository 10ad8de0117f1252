// Conversion time and peak memory for a SmolLM-135M-shaped GQA model (random weights): hidden
// 576, 30 layers, 9 heads, 3 KV heads, head_dim 64, intermediate 1536, vocab 49152.
// Run: node scripts/run-ts.mjs bench/convert-smollm.ts [kvRank ropeDim] [--no-calibration]
// (default: calibrated on the model's own samples, as convertToMla does by default)
// The checkpoint is written by a child process first, so that this process's peak RSS is the conversion's.
import { existsSync, mkdirSync, openSync, writeSync, closeSync, writeFileSync, rmSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { convertToMla } from '../src/index.js';
import { writeConvertedFolder } from '../src/internal.js';

const DIR = '/tmp/mla-wasm-smollm-135m';
const config = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 49152, hidden_size: 576, intermediate_size: 1536,
  num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, head_dim: 64, rms_norm_eps: 1e-5, rope_theta: 10000,
  max_position_embeddings: 2048, rope_scaling: null, tie_word_embeddings: true, bos_token_id: 0, eos_token_id: 0,
};

function make(): void {
  mkdirSync(DIR, { recursive: true });
  writeFileSync(`${DIR}/config.json`, JSON.stringify(config));
  const d = 576, I = 1536, shapes: [string, number[]][] = [['model.embed_tokens.weight', [49152, d]]];
  for (let l = 0; l < 30; l++) {
    const p = `model.layers.${l}.`;
    shapes.push([p + 'input_layernorm.weight', [d]], [p + 'post_attention_layernorm.weight', [d]],
      [p + 'self_attn.q_proj.weight', [576, d]], [p + 'self_attn.k_proj.weight', [192, d]], [p + 'self_attn.v_proj.weight', [192, d]],
      [p + 'self_attn.o_proj.weight', [d, 576]], [p + 'mlp.gate_proj.weight', [I, d]], [p + 'mlp.up_proj.weight', [I, d]], [p + 'mlp.down_proj.weight', [d, I]]);
  }
  shapes.push(['model.norm.weight', [d]]);
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const [n, s] of shapes) { const b = 4 * s.reduce((x, y) => x * y, 1); header[n] = { dtype: 'F32', shape: s, data_offsets: [off, off + b] }; off += b; }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const fd = openSync(`${DIR}/model.safetensors`, 'w');
  const len = Buffer.alloc(8); len.writeBigUInt64LE(BigInt(json.length));
  writeSync(fd, len); writeSync(fd, json);
  let seed = 1;
  for (const [n, s] of shapes) {
    const a = new Float32Array(s.reduce((x, y) => x * y, 1));
    const scale = s.length === 1 ? 0 : Math.sqrt(3 / s[1]);
    for (let i = 0; i < a.length; i++) { seed = (seed * 1103515245 + 12345) >>> 0; a[i] = s.length === 1 ? 1 : ((seed / 2 ** 32) * 2 - 1) * scale; }
    writeSync(fd, new Uint8Array(a.buffer));
    void n;
  }
  closeSync(fd);
}

if (process.argv.includes('--make')) { make(); process.exit(0); }
if (!existsSync(`${DIR}/model.safetensors`)) spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--make'], { stdio: 'inherit' });
const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const kvRank = Number(args[0] ?? 256), ropeDim = Number(args[1] ?? 64);
const calibration = process.argv.includes('--no-calibration') ? false : undefined;
let calibrated = 0;
const bytes = statSync(`${DIR}/model.safetensors`).size;
const t0 = performance.now();
const mla = await convertToMla(DIR, { kvRank, ropeDim, calibration, onProgress: (_, __, stage) => { if (stage === 'layers' && !calibrated) calibrated = performance.now(); } });
const tConv = (performance.now() - t0) / 1000;
await writeConvertedFolder(mla, `${DIR}-mla`);
const total = (performance.now() - t0) / 1000;
const rss = process.resourceUsage().maxRSS * 1024;
console.log(`SmolLM-135M shape, ${(bytes / 2 ** 20).toFixed(0)} MiB f32: kv ${kvRank} + rope ${ropeDim} (cache ${mla.summary.cacheBefore} → ${mla.summary.cacheAfter}), ` +
  (mla.summary.method === 'weights' ? 'plain weight SVD' : `calibrated on ${mla.summary.calibrationTokens} tokens it sampled (${((calibrated - t0) / 1000).toFixed(1)} s of sampling and capture)`));
console.log(`convert ${tConv.toFixed(1)} s, with writing ${total.toFixed(1)} s; peak RSS ${(rss / 2 ** 20).toFixed(0)} MiB = ${(rss / bytes).toFixed(2)} × the model file`);
rmSync(`${DIR}-mla`, { recursive: true, force: true });
