// A prompt's own tokens as pieces: each token's text and, when asked, its log-probability given
// the tokens before it (the first has none), with the most likely alternatives. This is what the
// server's `echo` returns, and how lm-evaluation-harness scores text. The prompt runs in slices
// in a session of its own, with a turn for the event loop between slices.
import { MlaError } from '../errors.js';
import type { TokenModel } from '../model/model.js';
import { PROMPT_SLICE, yieldToEventLoop, type GenerationPiece } from './generate.js';
import { tokenLogprobs } from './sampling.js';

/**
 * The pieces of `ids`: text as a stream decoder gives it (special tokens skipped), and with `top`
 * not null each piece but the first carries `logprob` and `topLogprobs` (top alternatives).
 */
export async function scorePrompt(model: TokenModel, ids: readonly number[], top: number | null, signal?: AbortSignal): Promise<GenerationPiece[]> {
  const detok = model.tokenizer?.createStreamDecoder({ skipSpecialTokens: true });
  const pieces: GenerationPiece[] = ids.map((id, i) => {
    const text = detok ? detok.push(id) : '';
    return { id, text: i === ids.length - 1 && detok ? text + detok.flush() : text };
  });
  if (top === null || ids.length < 2) return pieces;
  const V = model.config.vocabSize;
  // The last token's logits predict what follows the prompt: not needed here.
  const session = model.createSession({ contextLength: ids.length - 1 });
  try {
    for (let start = 0; start < ids.length - 1; start += PROMPT_SLICE) {
      if (signal?.aborted) throw new MlaError('ABORTED', 'scoring the prompt was aborted');
      const slice = ids.slice(start, Math.min(start + PROMPT_SLICE, ids.length - 1));
      const logits = session.runAll(slice, 'absorbed');
      for (let t = 0; t < slice.length; t++) {
        const next = start + t + 1;
        const lp = tokenLogprobs(logits.subarray(t * V, (t + 1) * V), ids[next], top);
        pieces[next].logprob = lp.logprob;
        pieces[next].topLogprobs = lp.top;
      }
      await yieldToEventLoop();
    }
  } finally {
    session.dispose();
  }
  return pieces;
}
