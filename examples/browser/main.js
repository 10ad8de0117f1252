// The browser example: load the built-in model over HTTP, stream a greedy continuation into the
// page as it decodes, and show speed, cache size and whether threads are on.
// URL parameters (for tests): ?prompt=…&tokens=N&simd=auto|simd|relaxed&threads=N starts at once.
import { formatRate, loadModel } from 'mla-wasm';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const status = (text, state) => { $('status').textContent = text; if (state) $('status').dataset.state = state; };
const bytes = (n) => (n < 1024 ? `${n} B` : n < 2 ** 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 2 ** 20).toFixed(1)} MiB`);
const rate = (n, ms) => `${n} tokens in ${ms.toFixed(1)} ms, ${formatRate(n, ms, 'tokens/s')}`;
const argmax = (v) => v.reduce((best, x, i) => (x > v[best] ? i : best), 0);
const nextFrame = () => new Promise((ok) => requestAnimationFrame(() => ok()));

if (params.has('prompt')) $('prompt').value = params.get('prompt');
if (params.has('tokens')) $('tokens').value = params.get('tokens');

let model;
try {
  const t0 = performance.now();
  model = await loadModel(new URL('/models/fortune-mla/', location.href), {
    simd: params.get('simd') ?? 'auto',
    threads: params.has('threads') ? Number(params.get('threads')) : undefined, // default: the cores, at most 4 (1 for a model under 48 MiB)
  });
  const c = model.config;
  $('model').textContent = `fortune-mla: ${c.layers} layers, hidden ${c.hidden}, vocab ${c.vocabSize}, ` +
    `${bytes(model.weightBytes)} of weights, loaded in ${(performance.now() - t0).toFixed(0)} ms`;
  $('simd').textContent = model.simd === 'relaxed' ? 'relaxed SIMD (fused multiply-add)' : 'SIMD';
  $('cache').textContent = `${model.kvCacheBytesPerToken} B per token; multi-head attention with the same heads: ` +
    `${model.mhaCacheBytesPerToken} B per token (${(model.mhaCacheBytesPerToken / model.kvCacheBytesPerToken).toFixed(1)}× more)`;
  const threads = model.threads;
  const isolated = globalThis.crossOriginIsolated === true;
  // Threads off by choice: loadModel gives a model this small one thread unless asked for more.
  const byDefault = threads === 1 && isolated && !params.has('threads') ? ': the default for a model under 48 MiB, ?threads=2 asks for two' : '';
  $('threads').textContent = `${threads > 1 ? `on: ${threads} threads` : `off${byDefault}`} (crossOriginIsolated: ${isolated ? 'yes' : 'no'})`;
  // The answer cannot run past the context: the field says so rather than stopping short silently.
  $('tokens').max = String(c.maxPositions - 1);
  $('go').disabled = false;
  status('Ready.', 'ready');
} catch (e) {
  status(`Could not load the model: ${e.message}`, 'error');
  throw e;
}

async function generate(promptText, maxTokens) {
  $('go').disabled = true;
  status('Generating…', 'running');
  const { bosTokenId, eosTokenIds, maxPositions } = model.config;
  // The built-in model's vocabulary is the 256 bytes plus specials: a prompt is its UTF-8 bytes.
  const prompt = [bosTokenId, ...new TextEncoder().encode(promptText)];
  if (prompt.length >= maxPositions) {
    status(`The prompt takes ${prompt.length} tokens; the model's context is ${maxPositions}, and the answer needs room.`, 'error');
    $('go').disabled = false;
    return;
  }
  const session = model.createSession({ contextLength: Math.min(maxPositions, prompt.length + maxTokens) });
  const text = $('text');
  text.replaceChildren(Object.assign(document.createElement('span'), { className: 'prompt', textContent: promptText }));
  const out = text.appendChild(document.createTextNode(''));
  const utf8 = new TextDecoder();
  const ids = [];
  try {
    let t = performance.now();
    let logits = session.prefill(prompt);
    const prefillMs = performance.now() - t;
    $('prefill').textContent = rate(prompt.length, prefillMs);
    let decodeMs = 0;
    while (ids.length < maxTokens && session.position < session.capacity) {
      const id = argmax(logits);
      if (eosTokenIds.includes(id)) break;
      ids.push(id);
      if (id < 256) out.appendData(utf8.decode(new Uint8Array([id]), { stream: true }));
      t = performance.now();
      logits = session.step(id);
      decodeMs += performance.now() - t; // compute only: the waits for the screen are not counted
      $('decode').textContent = rate(ids.length, decodeMs);
      $('cache').dataset.used = String(session.kvCacheBytes);
      await nextFrame(); // let the page show the token
    }
    out.appendData(utf8.decode());
    $('cache').textContent = `${bytes(session.kvCacheBytes)} for ${session.position} tokens: ` +
      `${model.kvCacheBytesPerToken} B per token; multi-head attention with the same heads: ` +
      `${model.mhaCacheBytesPerToken} B per token (${(model.mhaCacheBytesPerToken / model.kvCacheBytesPerToken).toFixed(1)}× more)`;
    globalThis.mlaResult = { ids, text: out.data, simd: model.simd, threads: model.threads, prefillMs, decodeMs, crossOriginIsolated };
    status(`Done: ${ids.length} tokens.`, 'done');
  } catch (e) {
    status(`Failed: ${e.message}`, 'error');
    throw e;
  } finally {
    session.dispose();
    $('go').disabled = false;
  }
}

$('form').addEventListener('submit', (e) => {
  e.preventDefault();
  generate($('prompt').value, Number($('tokens').value));
});
if (params.has('tokens')) await generate($('prompt').value, Number($('tokens').value));
