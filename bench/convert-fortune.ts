// fortune-gqa (128 cache numbers per token per layer) converted to MLA at several cache sizes,
// scored as `mla-wasm perplexity --window 192` scores: held-out nats/byte. Methods: `samples`
// (the default: calibrated on text the source samples itself), `text` (calibrated on 30 of the
// first CAL val records), `weights` (plain weight SVD); every model is scored on the records after
// CAL (the same text for all).
// Run: node scripts/run-ts.mjs bench/convert-fortune.ts [--write bench/results/convert-fortune.json]
// (CONFIGS=cache:kvRank:ropeDim[:ropeSpacing],… METHODS=samples,text,weights LATENT_NORM=1: calibrated with the latent RMSNorm)
import { readFileSync, writeFileSync } from 'node:fs';
import { convertToMla, loadModel, type InMemoryModel, type Model } from '../src/index.js';

const GQA = '/work/shared/models/fortune-gqa', TWIN = '/work/shared/models/fortune-mla';
const CAL = 100;
const records: string[] = JSON.parse(readFileSync(`${GQA}/val_records.json`, 'utf8'));
const calibration = records.slice(0, 30).join('\n\n'); // of the CAL records set aside
const evalText = records.slice(CAL).join('\n\n');

const gqaModel = await loadModel(GQA);
const tok = gqaModel.tokenizer!;
const ids = tok.encode(evalText, { addSpecialTokens: false });
const bos = tok.bosTokenId ?? gqaModel.config.bosTokenId!;
gqaModel.dispose();
const bytes = new TextEncoder().encode(evalText).length;

function nll(model: Model, W = 192): number {
  const V = model.config.vocabSize, step = W - 1;
  let sum = 0;
  for (let s = 0; s < ids.length; s += step) {
    const win = [bos, ...ids.slice(s, s + step)];
    const logits = model.forward(win);
    for (let t = 0; t + 1 < win.length; t++) {
      const row = logits.subarray(t * V, (t + 1) * V);
      let m = -Infinity;
      for (let i = 0; i < V; i++) if (row[i] > m) m = row[i];
      let z = 0;
      for (let i = 0; i < V; i++) z += Math.exp(row[i] - m);
      sum += m + Math.log(z) - row[win[t + 1]];
    }
  }
  return sum / bytes;
}

async function score(source: string | InMemoryModel): Promise<number> {
  const model = await loadModel(source);
  try { return nll(model); } finally { model.dispose(); }
}

const rows: Record<string, unknown>[] = [];
const base = await score(GQA);
const twin = await score(TWIN);
console.log(`source GQA (128): ${base.toFixed(4)} nats/byte; MLA twin (64): ${twin.toFixed(4)}`);
const configs = (process.env.CONFIGS ?? '96:32:64,96:40:56,96:48:48,96:56:40,96:64:32,80:32:48,80:40:40,80:48:32,64:24:40,64:32:32,64:40:24')
  .split(',').map((s) => s.split(':').map(Number));
const methods = (process.env.METHODS ?? 'samples,text,weights').split(',') as ('samples' | 'text' | 'weights')[];
for (const [cache, kvRank, ropeDim, ropeSpacing] of configs) {
  for (const method of methods) {
    const t0 = performance.now();
    const mla = await convertToMla(GQA, { kvRank, ropeDim, ropeSpacing, calibration: method === 'text' ? calibration : method === 'weights' ? false : undefined,
      latentNorm: method !== 'weights' && process.env.LATENT_NORM === '1' });
    const secs = (performance.now() - t0) / 1000;
    const src: InMemoryModel = { config: mla.config, tensors: Object.fromEntries(mla.tensors) };
    const loss = await score(src);
    const rel = (loss / base - 1) * 100;
    rows.push({ cache, kvRank, ropeDim, ropeSpacing: mla.summary.ropeSpacing, method, calibrationTokens: mla.summary.calibrationTokens, loss, rel, secs });
    console.log(`cache ${cache} (kv ${kvRank} + rope ${ropeDim}, spacing ${mla.summary.ropeSpacing}) ${method}: ${loss.toFixed(4)} nats/byte (${rel >= 0 ? '+' : ''}${rel.toFixed(1)}%), ${secs.toFixed(1)} s`);
  }
}
const i = process.argv.indexOf('--write');
if (i > 0) writeFileSync(process.argv[i + 1], JSON.stringify({ base, twin, calRecords: CAL, rows }, null, 2) + '\n');
