// saveConversation / loadConversation: a chat's messages and KV cache as bytes, taken up again with
// the same next logits; damaged or foreign bytes are BAD_SNAPSHOT with nothing left allocated.
import { describe, expect, it } from 'vitest';
import { loadConversation, loadModel, MlaError, saveConversation, type ChatMessage } from '../src/index.js';

async function expectBad(f: () => unknown, mention: string): Promise<void> {
  let err: unknown;
  try { await f(); } catch (e) { err = e; }
  expect(err).toBeInstanceOf(MlaError);
  expect((err as MlaError).code).toBe('BAD_SNAPSHOT');
  expect((err as Error).message).toContain(mention);
}

describe('saved conversations', () => {
  it('round trip: the same messages, and the next turn\'s logits bit for bit; damaged bytes refused', async () => {
    const model = await loadModel();
    try {
      const session = model.createSession();
      const messages: ChatMessage[] = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What is a computer?' }];
      let answer = '';
      for await (const p of model.chat(messages, { session, temperature: 0, maxNewTokens: 12 })) answer += p.text;
      messages.push({ role: 'assistant', content: answer });
      const bytes = saveConversation(messages, session);
      const idle = model.memoryBytes;

      const back = loadConversation(model, bytes);
      expect(back.messages).toEqual(messages);
      expect(back.session.position).toBe(session.position);
      const next = [...messages, { role: 'user' as const, content: 'Why?' }];
      const ids = model.tokenizer!.encodeChat(next, { addGenerationPrompt: true });
      const a = session.prefill(ids.slice(session.position));
      const b = back.session.prefill(ids.slice(back.session.position));
      expect(Array.from(b)).toEqual(Array.from(a));
      back.session.dispose();
      session.dispose();

      const memory = model.memoryBytes;
      const damaged = bytes.slice();
      damaged[20] ^= 0xff; // inside the messages' JSON
      await expectBad(() => loadConversation(model, damaged), 'messages are damaged');
      await expectBad(() => loadConversation(model, bytes.subarray(0, 10)), 'does not start like one');
      const future = bytes.slice();
      future[4] = 9;
      await expectBad(() => loadConversation(model, future), 'format version 9');
      const long = bytes.slice();
      new DataView(long.buffer).setUint32(8, bytes.length, true);
      await expectBad(() => loadConversation(model, long), 'run past the end');
      await expectBad(() => loadConversation(model, bytes.subarray(0, bytes.length - 7)), 'snapshot');
      expect(model.memoryBytes).toBe(memory);
      expect(memory).toBeLessThanOrEqual(idle);
    } finally {
      model.dispose();
    }
  });
});
