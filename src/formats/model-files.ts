// The optional files of a model beside config.json (tokenizer.json, tokenizer_config.json,
// generation_config.json, chat_template.jinja), as openSource found them, parsed. Absent files
// are simply absent; a file that is there but not JSON is an error naming it. An in-memory
// { config, tensors } model may carry them as tokenizerJson, tokenizerConfig, generationConfig
// and chatTemplate.
import { parseJson, type LoadedSource, type ModelSource } from './source.js';
import type { TokenizerFiles } from './tokenizer.js';

export function tokenizerFilesOf(src: LoadedSource, source: ModelSource | undefined): TokenizerFiles {
  if (typeof source === 'object' && source !== null && !(source instanceof URL) && !(source instanceof Map) && 'tensors' in source) {
    const s = source as unknown as Record<string, unknown>;
    return {
      tokenizerJson: s.tokenizerJson,
      tokenizerConfig: s.tokenizerConfig,
      generationConfig: s.generationConfig,
      chatTemplate: typeof s.chatTemplate === 'string' ? s.chatTemplate : undefined,
    };
  }
  if (src.tokenizerFiles) return src.tokenizerFiles;
  const e = src.extras;
  const json = (name: 'tokenizer.json' | 'tokenizer_config.json' | 'generation_config.json') =>
    e[name] && parseJson(e[name]!, name);
  const template = e['chat_template.jinja'];
  return {
    tokenizerJson: json('tokenizer.json'),
    tokenizerConfig: json('tokenizer_config.json'),
    generationConfig: json('generation_config.json'),
    chatTemplate: template && new TextDecoder().decode(template),
  };
}
