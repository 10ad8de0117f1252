// The model users hold: a TokenModel (sessions, forward) that also streams text: generate() and
// chat() through its tokenizer, sampling and sessions.
import type { ChatMessage } from '../formats/tokenizer.js';
import type { ModelSource } from '../formats/source.js';
import { openModel, TokenModel, type LoadOptions } from '../model/model.js';
import { chat, generate, type ChatOptions, type GenerateOptions, type Generation } from './generate.js';

export class Model extends TokenModel {
  /**
   * Stream a continuation of `prompt` (text through the tokenizer, or token ids) as { id, text }
   * pieces. Options default to generation_config.json; see GenerateOptions.
   */
  generate(prompt: string | ArrayLike<number>, options: GenerateOptions = {}): Generation {
    this.alive();
    return generate(this, prompt, options);
  }

  /** Stream the assistant's answer to a conversation, rendered by the tokenizer's chat template. */
  chat(messages: ChatMessage[], options: ChatOptions = {}): Generation {
    this.alive();
    return chat(this, messages, options);
  }
}

/**
 * Load a model: a folder (path or URL) holding config.json and model.safetensors (or shards listed in
 * model.safetensors.index.json), a map of file name → bytes, or an in-memory { config, tensors }.
 * Without a source, the built-in default model (fortune-mla).
 */
export async function loadModel(source?: ModelSource, options: LoadOptions = {}): Promise<Model> {
  return new Model(await openModel(source, options));
}
