// scorePrompt: a prompt's tokens with their log-probabilities under the model, run in slices, equal
// to what one forward() over the whole prompt gives.
import { describe, expect, it } from 'vitest';
import { loadModel, MlaError } from '../src/index.js';
import { PROMPT_SLICE } from '../src/generate/generate.js';
import { scorePrompt } from '../src/generate/score.js';

describe('scorePrompt', () => {
  it('a prompt longer than a slice: each token scored given the ones before it, as forward() scores it', async () => {
    const model = await loadModel();
    try {
      const tok = model.tokenizer!;
      const idle = model.memoryBytes;
      const ids = tok.encode('The moon is a lantern. '.repeat(12)).slice(0, PROMPT_SLICE + 40);
      expect(ids.length).toBe(PROMPT_SLICE + 40);
      const pieces = await scorePrompt(model, ids, 3);
      expect(pieces.map((p) => p.id)).toEqual(ids);
      expect(pieces.map((p) => p.text).join('')).toBe(tok.decode(ids, { skipSpecialTokens: true }));
      expect(pieces[0].logprob).toBeUndefined();
      const logits = model.forward(ids), V = model.config.vocabSize;
      let worst = 0;
      for (let t = 1; t < ids.length; t++) {
        const row = Array.from(logits.subarray((t - 1) * V, t * V), Number), m = Math.max(...row);
        const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
        worst = Math.max(worst, Math.abs(pieces[t].logprob! - (row[ids[t]] - lse)));
        expect(pieces[t].topLogprobs).toHaveLength(3);
        expect(pieces[t].topLogprobs![0].logprob).toBeGreaterThanOrEqual(pieces[t].logprob!);
      }
      expect(worst).toBeLessThan(1e-9);
      // Without logprobs only the text; an aborted signal stops it.
      expect((await scorePrompt(model, ids, null)).every((p) => p.logprob === undefined)).toBe(true);
      const aborted = AbortSignal.abort();
      await expect(scorePrompt(model, ids, 0, aborted)).rejects.toThrow(MlaError);
      expect(model.memoryBytes).toBe(idle); // no session left behind
    } finally {
      model.dispose();
    }
  });
});
