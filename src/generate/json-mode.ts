// JSON mode's token filter: which tokens' bytes keep the text a valid prefix of a JSON object.
// One token is checked by running its bytes through a copy of the acceptor; the whole vocabulary,
// when sampling needs it, by one walk over a trie of every token's bytes that skips a subtree as
// soon as its prefix is refused. The trie is built once per tokenizer and shared by generations.
import { MlaError } from '../errors.js';
import type { Tokenizer } from '../formats/tokenizer.js';
import { JsonAcceptor } from './json-acceptor.js';
import type { TokenFilter } from './sampling.js';

/**
 * Every text token's bytes as a trie whose nodes are stored in preorder (tokens sorted by bytes,
 * then inserted in turn), so a walk is a scan: node i's subtree is nodes i .. end[i] - 1.
 */
export class TokenTrie {
  /** Each id's bytes; null for ids JSON text never holds (special tokens, empty tokens, past the tokenizer). */
  readonly bytes: Array<Uint8Array | null>;
  /** Per node (0 is the root): its byte, its depth, the end of its subtree, where its ids start in `ids`. */
  readonly label: Uint8Array;
  readonly depth: Uint16Array;
  readonly end: Int32Array;
  readonly idStart: Int32Array;
  readonly ids: Int32Array;
  readonly maxDepth: number;

  constructor(tok: Tokenizer, vocabSize: number) {
    this.bytes = Array.from({ length: vocabSize }, (_, id) => {
      if (id >= tok.vocabSize || tok.isSpecial(id) || tok.idToToken(id) === undefined) return null;
      const b = tok.tokenBytes(id);
      return b.length > 0 ? b : null;
    });
    const order = [];
    for (let id = 0; id < vocabSize; id++) if (this.bytes[id]) order.push(id);
    order.sort((x, y) => compareBytes(this.bytes[x]!, this.bytes[y]!) || x - y);
    let nodes = 1, maxDepth = 0;
    for (let k = 0; k < order.length; k++) {
      const b = this.bytes[order[k]]!;
      nodes += b.length - (k > 0 ? commonPrefix(b, this.bytes[order[k - 1]]!) : 0);
      maxDepth = Math.max(maxDepth, b.length);
    }
    this.label = new Uint8Array(nodes);
    this.depth = new Uint16Array(nodes);
    this.end = new Int32Array(nodes);
    this.idStart = new Int32Array(nodes + 1);
    this.ids = Int32Array.from(order);
    this.maxDepth = maxDepth;
    // path[d]: the node at depth d on the current token's path; a node's subtree ends where the next
    // node at its depth or above begins.
    const path = new Int32Array(maxDepth + 1);
    let n = 1;
    for (let k = 0; k < order.length; k++) {
      const b = this.bytes[order[k]]!;
      const keep = k > 0 ? commonPrefix(b, this.bytes[order[k - 1]]!) : 0;
      for (let d = keep + 1; d <= maxDepth && this.end[path[d]] === 0 && path[d] > 0; d++) this.end[path[d]] = n;
      for (let d = keep + 1; d <= b.length; d++) {
        this.label[n] = b[d - 1];
        this.depth[n] = d;
        this.idStart[n] = k; // ids of nodes without one are the empty range k .. k
        path[d] = n++;
      }
      this.idStart[n] = k + 1; // the next node's ids start after this token's
    }
    for (let i = 1; i < nodes; i++) if (this.end[i] === 0) this.end[i] = nodes;
    this.end[0] = nodes;
    this.idStart[nodes] = order.length;
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function commonPrefix(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

const tries = new WeakMap<Tokenizer, Map<number, TokenTrie>>();

/** The trie of a tokenizer's tokens over a model's vocabulary, built on first use. */
export function tokenTrie(tok: Tokenizer, vocabSize: number): TokenTrie {
  let byVocab = tries.get(tok);
  if (!byVocab) tries.set(tok, (byVocab = new Map()));
  let trie = byVocab.get(vocabSize);
  if (!trie) byVocab.set(vocabSize, (trie = new TokenTrie(tok, vocabSize)));
  return trie;
}

/**
 * The tokens that keep the generated text a valid prefix of a JSON object. Stop ids (EOS among
 * them) are never allowed: the generation ends as soon as the object is complete, and before that
 * they would cut it short.
 */
export class JsonConstraint implements TokenFilter {
  private readonly state = new JsonAcceptor();
  private readonly probe = new JsonAcceptor();
  /** The walk's acceptor at each trie depth. */
  private readonly path: JsonAcceptor[];
  private readonly allowed: Uint8Array;

  constructor(private readonly trie: TokenTrie, private readonly stopIds: ReadonlySet<number>) {
    this.path = Array.from({ length: trie.maxDepth + 1 }, () => new JsonAcceptor());
    this.allowed = new Uint8Array(trie.bytes.length);
  }

  /** Whether the text so far is a whole JSON object. */
  get complete(): boolean {
    return this.state.complete;
  }

  allows(id: number): boolean {
    const b = this.trie.bytes[id];
    return b !== null && b !== undefined && !this.stopIds.has(id) && this.probe.copyFrom(this.state).push(b);
  }

  /** 1 for every id allowed now (the array is reused by the next call). */
  mask(): Uint8Array {
    const { label, depth, end, idStart, ids } = this.trie;
    const mask = this.allowed, path = this.path;
    mask.fill(0);
    path[0].copyFrom(this.state);
    let any = false;
    for (let i = 1; i < label.length;) {
      const d = depth[i];
      const s = path[d].copyFrom(path[d - 1]);
      if (!s.pushByte(label[i])) {
        i = end[i];
        continue;
      }
      for (let k = idStart[i]; k < idStart[i + 1]; k++) mask[ids[k]] = 1;
      any ||= idStart[i] < idStart[i + 1];
      i++;
    }
    for (const id of this.stopIds) if (id < mask.length) mask[id] = 0;
    if (!any) throw new MlaError('BAD_CONFIG', 'JSON mode: no token of this tokenizer continues the JSON text here');
    return mask;
  }

  /** Take the sampled token's bytes. */
  accept(id: number): void {
    if (!this.allows(id)) throw new Error(`JSON mode: token ${id} was sampled but is not allowed`);
    this.state.copyFrom(this.probe);
  }
}
