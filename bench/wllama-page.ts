// The page side of bench/wllama-peer.ts: bundled into build/wllama-page.mjs and loaded by
// bench/wllama.html in headless Chromium (cross-origin isolated, so both wasm builds can run
// threads). Each page holds one side (mla-wasm or wllama) on one GGUF file at one thread count;
// the Node side opens one page per side and asks them in turn for a round.
import { LoggerWithoutDebug, Wllama } from '@wllama/wllama';
import { loadModel } from '../src/internal.js';

export interface PeerSpec {
  side: 'mla-wasm' | 'wllama';
  type: string;
  threads: number;
  /** the GGUF file and wllama's wasm, both on the page's own 127.0.0.1 server */
  ggufUrl: string;
  wasmUrl: string;
  /** the prompt: its text (wllama takes text only) and its ids under the model's tokenizer (BOS + one per byte) */
  text: string;
  ids: number[];
  /** decode steps timed per round */
  steps: number;
  /** greedy tokens after the prompt compared between the sides */
  check: number;
}

export interface PeerReady {
  ok: boolean;
  note?: string;
  version?: string;
  loadMs?: number;
  threads?: number;
  /** the greedy continuation of the prompt, `check` tokens */
  greedy?: number[];
  /** ours only: the top 20 ids after the prompt, for the rank of theirs */
  top?: number[];
}

export interface PeerRound {
  /** the 512-token prompt: ours by wall time; wllama by llama.cpp's own clock (its server's timings) */
  ppMs: number;
  /** ours: each decode step by wall time; wllama: one figure, the request's decode steps on llama.cpp's clock / their count */
  tgMs: number[];
  /** wllama only: the request (prompt and steps + 1 tokens) by wall time in the page, and the greedy tokens it gave */
  wallMs?: number;
  tokens?: number[];
}

interface Peer { ready: PeerReady; round: () => Promise<PeerRound> }

const argmax = (x: Float32Array) => { let b = 0; for (let i = 1; i < x.length; i++) if (x[i] > x[b]) b = i; return b; };

async function oursPeer(spec: PeerSpec): Promise<Peer> {
  const t0 = performance.now();
  const model = await loadModel(spec.ggufUrl, { threads: spec.threads, weights: 'auto' });
  const loadMs = performance.now() - t0;
  if (model.threads !== spec.threads) throw new Error(`${model.threads} threads, not ${spec.threads}`);
  const encoded = model.tokenizer?.encode(spec.text);
  if (encoded?.join() !== spec.ids.join()) throw new Error(`the tokenizer reads the prompt as ${encoded?.length} other ids`);
  const session = model.createSession({ contextLength: spec.ids.length + Math.max(spec.steps, spec.check) + 8 });
  let logits = session.prefill(spec.ids);
  const top = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]).slice(0, 20);
  const greedy = [argmax(logits)];
  while (greedy.length < spec.check) { logits = session.step(greedy[greedy.length - 1]); greedy.push(argmax(logits)); }
  const out = new Float32Array(model.config.vocabSize);
  return {
    ready: { ok: true, version: `mla-wasm, ${model.simd} build`, loadMs, threads: model.threads, greedy, top },
    round: async () => {
      session.truncate(0);
      const t = performance.now();
      session.prefill(spec.ids, { out });
      const ppMs = performance.now() - t;
      const tgMs: number[] = [];
      // Each step computes the logits and picks the greedy token, as a decode loop must.
      let id = argmax(out);
      for (let i = 0; i < spec.steps; i++) {
        const s = performance.now();
        session.step(id, { out });
        id = argmax(out);
        tgMs.push(performance.now() - s);
      }
      return { ppMs, tgMs };
    },
  };
}

interface Completion {
  timings: { prompt_n: number; prompt_ms: number; predicted_n: number; predicted_ms: number };
  choices: { logprobs: { content: { id: number }[] } | null }[];
}

async function wllamaPeer(spec: PeerSpec): Promise<Peer> {
  const t0 = performance.now();
  const blob = await (await fetch(spec.ggufUrl)).blob();
  const wllama = new Wllama({ default: spec.wasmUrl }, { logger: LoggerWithoutDebug });
  // As llama-peers asks native llama.cpp: the prompt in one ubatch of 512, flash attention off, CPU only.
  await wllama.loadModel([blob], {
    n_threads: spec.threads, n_ctx: spec.ids.length + Math.max(spec.steps, spec.check) + 64, n_batch: 512, n_ubatch: 512,
    n_gpu_layers: 0, flash_attn: false, n_parallel: 1,
  });
  const loadMs = performance.now() - t0;
  return {
    // Its greedy tokens come with the first round.
    ready: { ok: true, version: `wllama ${Wllama.getLibllamaVersion()}`, loadMs, threads: wllama.getNumThreads() },
    round: async () => {
      const t = performance.now();
      // Greedy (temperature 0, EOS ignored); cache_prompt off, so each request prefills the whole
      // prompt from scratch; logprobs for the ids of the tokens (their text is empty: reserved ids).
      const r = await wllama.createCompletion({
        prompt: spec.text, max_tokens: Math.max(spec.steps, spec.check) + 1, temperature: 0, ignore_eos: true, logprobs: 1, cache_prompt: false,
      } as never) as unknown as Completion;
      const wallMs = performance.now() - t;
      const { timings } = r;
      if (timings.prompt_n !== spec.ids.length) throw new Error(`wllama read the prompt as ${timings.prompt_n} tokens, not ${spec.ids.length}`);
      // The server's clock starts decoding at the first sampled token: predicted_n - 1 steps.
      return {
        ppMs: timings.prompt_ms, tgMs: [timings.predicted_ms / (timings.predicted_n - 1)], wallMs,
        tokens: r.choices[0].logprobs?.content.map((c) => c.id) ?? [],
      };
    },
  };
}

let peer: Peer | undefined;
const api = {
  async open(spec: PeerSpec): Promise<PeerReady> {
    try {
      peer = spec.side === 'mla-wasm' ? await oursPeer(spec) : await wllamaPeer(spec);
      return peer.ready;
    } catch (e) {
      return { ok: false, note: String((e as Error)?.stack ?? e).slice(0, 1000) };
    }
  },
  round: () => peer!.round(),
  crossOriginIsolated: () => crossOriginIsolated,
};
(globalThis as unknown as { peer: typeof api }).peer = api;
