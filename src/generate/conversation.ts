// A chat conversation as bytes: its messages and its session's snapshot, so that it can be closed
// and taken up again (the CLI's `chat --session FILE`) without running the conversation again.
// Layout: "MLAC", a format version byte, three zero bytes, the messages' JSON length (u32, little
// endian), the JSON ({ "messages": [...] }), then the session snapshot (model/snapshot.ts), which
// carries its own checks: model fingerprint, cache format, rows checksum.
import { MlaError } from '../errors.js';
import { checkMessages, type ChatMessage } from '../formats/tokenizer.js';
import type { Session } from '../model/session.js';
import type { TokenModel } from '../model/model.js';

const MAGIC = [0x4d, 0x4c, 0x41, 0x43]; // "MLAC"
const VERSION = 1;
const HEAD = 12;

/** The conversation so far and the session that holds it. */
export function saveConversation(messages: readonly ChatMessage[], session: Session): Uint8Array {
  checkMessages(messages as ChatMessage[]);
  const json = new TextEncoder().encode(JSON.stringify({ messages: messages.map(({ role, content }) => ({ role, content })) }));
  const snapshot = session.snapshot();
  const out = new Uint8Array(HEAD + json.length + snapshot.length);
  out.set(MAGIC, 0);
  out[4] = VERSION;
  new DataView(out.buffer).setUint32(8, json.length, true);
  out.set(json, HEAD);
  out.set(snapshot, HEAD + json.length);
  return out;
}

/**
 * Take a saved conversation up again in `model`: its messages, and a session restored from its
 * snapshot (of `contextLength` positions, default the saved session's). BAD_SNAPSHOT when the bytes
 * are not a conversation of this format, or the snapshot is of another model or damaged; nothing
 * is left allocated then.
 */
export function loadConversation(model: TokenModel, bytes: Uint8Array, options: { contextLength?: number } = {}): { messages: ChatMessage[]; session: Session } {
  const bad = (why: string): never => { throw new MlaError('BAD_SNAPSHOT', `not a saved conversation: ${why}`); };
  if (!(bytes instanceof Uint8Array) || bytes.length < HEAD || MAGIC.some((b, i) => bytes[i] !== b)) bad('it does not start like one');
  if (bytes[4] !== VERSION) bad(`format version ${bytes[4]}; this mla-wasm reads version ${VERSION}`);
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.length).getUint32(8, true);
  if (length > bytes.length - HEAD) bad(`its messages run past the end (${length} bytes of ${bytes.length - HEAD})`);
  let messages: ChatMessage[] = [];
  try {
    const parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(HEAD, HEAD + length))) as { messages?: unknown };
    messages = parsed.messages as ChatMessage[];
    checkMessages(messages);
  } catch (e) {
    bad(`its messages are damaged (${(e as Error).message})`);
  }
  const session = model.restoreSession(bytes.subarray(HEAD + length), options.contextLength === undefined ? {} : { contextLength: options.contextLength });
  return { messages, session };
}
