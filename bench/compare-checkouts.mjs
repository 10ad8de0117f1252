// Same-run A/B of two checkouts of this repository: prefill of 512 tokens and decode steps at 512
// of context, through each checkout's public API (its built dist/index.js).
//
//   node bench/compare-checkouts.mjs <checkout A> <checkout B> [--rounds 6] [--threads 1] [--simd relaxed]
//     [--model FILE] [--out file.json]
//
// The machine is shared, so the two are interleaved as tightly as they can be: each round is a
// fresh process that loads both checkouts' models side by side and alternates them call by call
// (A then B, then B then A, …): prefill, prefill, …, then step, step, … Rounds alternate which
// checkout loads first. A burst of someone else's work then lands on both sides alike, and the
// ratio B/A of neighbouring calls keeps its meaning while the machine's speed drifts.
//
// `--model FILE` (a GGUF file or model folder) times that model instead. By default the model is
// built in memory, so both read exactly the same weights: DeepSeek-V2-Lite attention
// dims (hidden 2048, 16 heads, kv_lora_rank 512, rope 64, nope 128, v 128, no query compression),
// 2 dense layers with MLP 1408, vocab 1024: the "V2-Lite dims" model of the llama rows.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const CONTEXT = 512;
/** Prefills per side per round (after one untimed), and decode steps (after WARM_STEPS untimed). */
const PREFILLS = 4, WARM_STEPS = 16, DECODE_STEPS = 64;
const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : dflt; };
const threads = Number(opt('--threads', '1'));
const simd = opt('--simd', 'relaxed');
const modelFile = opt('--model', '') && path.resolve(opt('--model', ''));

const CONFIG = {
  architectures: ['DeepseekV2ForCausalLM'], model_type: 'deepseek_v2', vocab_size: 1024, hidden_size: 2048,
  intermediate_size: 1408, num_hidden_layers: 2, num_attention_heads: 16, num_key_value_heads: 16,
  q_lora_rank: null, kv_lora_rank: 512, qk_nope_head_dim: 128, qk_rope_head_dim: 64, v_head_dim: 128,
  rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 4096, rope_scaling: null, tie_word_embeddings: false,
};

/** The checkpoint's tensors with small deterministic values (norms 1), listed by hand: one list for both checkouts. */
function tensors() {
  const c = CONFIG, H = c.num_attention_heads, d = c.hidden_size;
  const shapes = [['model.embed_tokens.weight', [c.vocab_size, d]]];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    shapes.push(
      [p + 'input_layernorm.weight', [d]],
      [p + 'self_attn.q_proj.weight', [H * (c.qk_nope_head_dim + c.qk_rope_head_dim), d]],
      [p + 'self_attn.kv_a_proj_with_mqa.weight', [c.kv_lora_rank + c.qk_rope_head_dim, d]],
      [p + 'self_attn.kv_a_layernorm.weight', [c.kv_lora_rank]],
      [p + 'self_attn.kv_b_proj.weight', [H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank]],
      [p + 'self_attn.o_proj.weight', [d, H * c.v_head_dim]],
      [p + 'post_attention_layernorm.weight', [d]],
      [p + 'mlp.gate_proj.weight', [c.intermediate_size, d]],
      [p + 'mlp.up_proj.weight', [c.intermediate_size, d]],
      [p + 'mlp.down_proj.weight', [d, c.intermediate_size]],
    );
  }
  shapes.push(['model.norm.weight', [d]], ['lm_head.weight', [c.vocab_size, d]]);
  let seed = 1;
  const out = {};
  for (const [name, shape] of shapes) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const scale = shape.length === 1 ? 0 : 1 / Math.sqrt(shape.at(-1));
    for (let i = 0; i < data.length; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      data[i] = scale ? ((seed / 2 ** 32) * 2 - 1) * scale : 1;
    }
    out[name] = { shape, data };
  }
  return out;
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const stats = (xs) => ({ min: Math.min(...xs), median: median(xs), max: Math.max(...xs) });

/** One side: a checkout's model, a session, and its timings. */
async function side(checkout, weights) {
  const { loadModel } = await import(pathToFileURL(path.join(checkout, 'dist/index.js')).href);
  const model = await loadModel(modelFile || { config: CONFIG, tensors: weights }, { simd, threads });
  if (model.threads !== threads) throw new Error(`${checkout}: ${threads} threads asked, ${model.threads} available`);
  const session = model.createSession({ contextLength: CONTEXT + WARM_STEPS + DECODE_STEPS + 1 });
  return { model, session, out: new Float32Array(model.config.vocabSize), prefillMs: [], decodeMs: [] };
}

/** Time f() for this side, into list. */
function timed(list, f) {
  const t = performance.now();
  f();
  list.push(performance.now() - t);
}

async function child(dirs, firstIsA) {
  const weights = modelFile ? null : tensors();
  const order = firstIsA ? [0, 1] : [1, 0];
  const sides = [];
  for (const i of order) sides[i] = await side(dirs[i], weights);
  const vocab = sides[0].model.config.vocabSize;
  let s = 7;
  const prompt = Array.from({ length: CONTEXT }, () => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return s % vocab; });
  // Alternate the order of every pair of calls: A B, B A, A B, …
  const inTurn = (k, f) => { for (const i of k % 2 ? [1, 0] : [0, 1]) f(sides[i]); };
  for (let k = 0; k <= PREFILLS; k++) {
    inTurn(k, (x) => {
      x.session.truncate(0);
      if (k === 0) x.session.prefill(prompt, { out: x.out }); // warms V8 up
      else timed(x.prefillMs, () => x.session.prefill(prompt, { out: x.out }));
    });
  }
  inTurn(0, (x) => { for (let i = 0; i < WARM_STEPS; i++) x.session.step(i, { out: x.out }); x.session.truncate(CONTEXT); });
  for (let k = 0; k < DECODE_STEPS; k++) inTurn(k, (x) => timed(x.decodeMs, () => x.session.step((k * 31) % vocab, { out: x.out })));
  const [a, b] = sides;
  const sameLogits = a.out.every((v, i) => v === b.out[i]);
  const ratios = (k) => a[k].map((t, i) => b[k][i] / t);
  console.log(JSON.stringify({
    build: [a.model.simd, b.model.simd], sameLogits,
    A: { prefillMs: median(a.prefillMs), decodeMs: median(a.decodeMs), decodeBestMs: Math.min(...a.decodeMs) },
    B: { prefillMs: median(b.prefillMs), decodeMs: median(b.decodeMs), decodeBestMs: Math.min(...b.decodeMs) },
    // B / A of neighbouring calls, median over the round.
    prefillRatio: median(ratios('prefillMs')), decodeRatio: median(ratios('decodeMs')),
  }));
  for (const x of sides) x.model.dispose();
}

async function parent() {
  const dirs = argv.filter((x, i) => !x.startsWith('--') && !argv[i - 1]?.startsWith('--')).map((x) => path.resolve(x));
  if (dirs.length !== 2) throw new Error('usage: node bench/compare-checkouts.mjs <checkout A> <checkout B> [--rounds N] [--threads N] [--out file.json]');
  const rounds = Number(opt('--rounds', '6'));
  const self = fileURLToPath(import.meta.url);
  const loadBefore = os.loadavg()[0];
  const runs = [];
  for (let r = 0; r < rounds; r++) {
    const args = ['--experimental-wasm-relaxed-simd', self, '--child', ...dirs, '--threads', String(threads), '--simd', simd,
      ...(modelFile ? ['--model', modelFile] : []), ...(r % 2 ? ['--b-first'] : [])];
    const p = spawnSync(process.execPath, args, { encoding: 'utf8' });
    const line = p.stdout.split('\n').find((l) => l.startsWith('{'));
    if (p.status !== 0 || !line) throw new Error(`round ${r + 1} failed: ${p.stderr.trim().split('\n').slice(-3).join(' / ')}`);
    const x = { round: r + 1, loadAverage: +os.loadavg()[0].toFixed(2), ...JSON.parse(line) };
    runs.push(x);
    console.error(`round ${r + 1}/${rounds}: prefill A ${x.A.prefillMs.toFixed(1)} B ${x.B.prefillMs.toFixed(1)} ms (B/A ${x.prefillRatio.toFixed(3)}), ` +
      `decode A ${x.A.decodeMs.toFixed(3)} B ${x.B.decodeMs.toFixed(3)} ms/token (B/A ${x.decodeRatio.toFixed(3)}), same logits: ${x.sameLogits}`);
  }
  const over = (get) => stats(runs.map(get));
  const summary = {
    A: dirs[0], B: dirs[1], threads, simd, rounds, context: CONTEXT, prefillsTimed: PREFILLS, decodeSteps: DECODE_STEPS, ...(modelFile ? { model: modelFile } : { config: CONFIG }),
    loadAverage: { before: +loadBefore.toFixed(2), during: over((x) => x.loadAverage) },
    sameLogits: runs.every((x) => x.sameLogits),
    prefillMs: { A: over((x) => x.A.prefillMs), B: over((x) => x.B.prefillMs), ratioBoverA: over((x) => x.prefillRatio) },
    decodeMs: { A: over((x) => x.A.decodeMs), B: over((x) => x.B.decodeMs), ratioBoverA: over((x) => x.decodeRatio) },
    decodeBestMs: { A: over((x) => x.A.decodeBestMs), B: over((x) => x.B.decodeBestMs) },
    runs,
  };
  const f = (st) => `${st.min.toFixed(3)} / ${st.median.toFixed(3)} / ${st.max.toFixed(3)}`;
  for (const k of ['prefillMs', 'decodeMs']) {
    console.error(`${k}, min / median / max over rounds: A ${f(summary[k].A)}; B ${f(summary[k].B)}; B/A ${f(summary[k].ratioBoverA)}`);
  }
  console.log(JSON.stringify(summary, null, 2));
  const outFile = opt('--out');
  if (outFile) writeFileSync(outFile, JSON.stringify(summary, null, 2) + '\n');
}

if (argv.includes('--child')) {
  const i = argv.indexOf('--child');
  await child([argv[i + 1], argv[i + 2]].map((d) => path.resolve(d)), !argv.includes('--b-first'));
} else await parent();
