// Phi-3 checkpoints fuse q, k and v into self_attn.qkv_proj (q rows, then k, then v) and gate
// and up into mlp.gate_up_proj (gate rows, then up), as Hugging Face's modeling_phi3 splits them.
// The model (src/model/weights.ts) and the GGUF writer name Llama's tensors, so a Phi-3 source is
// seen through Llama's names here: each part is a run of whole rows of its fused tensor, read
// exactly (a row is never re-encoded) and on its own (the source's rowsOf: a byte range of the
// safetensors file), so nothing past the part is read or held.
import { MlaError } from '../errors.js';
import type { TensorSource } from './tensor-source.js';

interface Part { fused: string; row0: number; rows: number }

const FUSED = /^(model\.layers\.\d+\.)(self_attn\.qkv_proj|mlp\.gate_up_proj)\.weight$/;

/** Rows of q, k, v and of gate/up, from a Phi-3 config.json; null when its numbers are unusable (parseConfig says why). */
function partRows(config: Record<string, unknown>): { q: number; kv: number; ff: number } | null {
  const { hidden_size: d, num_attention_heads: H, num_key_value_heads: G, head_dim: hd, intermediate_size: ff } = config;
  const isInt = (x: unknown): x is number => Number.isInteger(x) && (x as number) > 0;
  if (!isInt(d) || !isInt(H) || !isInt(ff)) return null;
  const kvHeads = G === undefined || G === null ? H : G, headDim = hd === undefined || hd === null ? d / H : hd;
  if (!isInt(kvHeads) || !isInt(headDim)) return null;
  return { q: H * headDim, kv: kvHeads * headDim, ff };
}

/** `src` with Phi-3's fused tensors split into Llama's (other sources as they are). */
export function splitFused(config: unknown, src: TensorSource): TensorSource {
  const c = config as Record<string, unknown> | null;
  const arch = Array.isArray(c?.architectures) ? c!.architectures[0] : undefined;
  // Both sources a folder or an in-memory model opens as (source.ts) give rowsOf.
  if (arch !== 'Phi3ForCausalLM' || !src.rowsOf) return src;
  const rows = partRows(c!);
  // Built on first use: the names are asked for after parseConfig has checked the numbers.
  let parts: Map<string, Part> | null = null;
  let names: string[] = [];
  const build = () => {
    if (parts) return parts;
    parts = new Map();
    names = [];
    for (const name of src.names()) {
      const m = FUSED.exec(name);
      const shape = src.shape(name);
      if (!m || !rows || !shape) { names.push(name); continue; }
      const split: [string, number][] = m[2] === 'self_attn.qkv_proj'
        ? [['self_attn.q_proj', rows.q], ['self_attn.k_proj', rows.kv], ['self_attn.v_proj', rows.kv]]
        : [['mlp.gate_proj', rows.ff], ['mlp.up_proj', rows.ff]];
      const total = split.reduce((a, [, r]) => a + r, 0);
      if (shape.length !== 2 || shape[0] !== total) {
        throw new MlaError('BAD_SHAPE', `${name} is [${shape}], expected [${total}, ${shape[shape.length - 1]}] (${split.map(([n, r]) => `${r} rows of ${n.split('.')[1]}`).join(', ')})`);
      }
      let row0 = 0;
      for (const [part, r] of split) {
        const partName = `${m[1]}${part}.weight`;
        parts.set(partName, { fused: name, row0, rows: r });
        names.push(partName);
        row0 += r;
      }
    }
    return parts;
  };
  const part = (name: string) => build().get(name);
  // Each part as a source of its own: a run of the fused tensor's rows, read without the rest.
  const rowsOf = (p: Part) => src.rowsOf!(p.fused, p.row0, p.rows);

  const split: TensorSource = {
    names: () => { build(); return names; },
    shape: (name) => {
      const p = part(name);
      return p ? [p.rows, src.shape(p.fused)![1]] : src.shape(name);
    },
    read: (name, out) => {
      const p = part(name);
      if (p) rowsOf(p).read(p.fused, out); else src.read(name, out);
    },
  };
  if (src.stored) split.stored = (name) => src.stored!(part(name)?.fused ?? name);
  if (src.read16) {
    split.read16 = (name, out) => {
      const p = part(name);
      if (p) rowsOf(p).read16!(p.fused, out); else src.read16!(name, out);
    };
  }
  // Safetensors holds no block-quantised tensors; a Phi-3 GGUF is split where it is mapped (gguf-tensors.ts).
  return split;
}
