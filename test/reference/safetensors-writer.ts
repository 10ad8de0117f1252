// Minimal safetensors writer for tests: F32, F16 and BF16 tensors (rounded to nearest, ties to
// even), laid out in the order given, header padded with spaces so that the data section starts
// on an 8-byte boundary (as the official writer does). Also writes sharded checkpoints with their
// model.safetensors.index.json.

export type FloatDtype = 'F32' | 'F16' | 'BF16';
export interface F32Tensor { shape: number[]; data: Float32Array; dtype?: FloatDtype }

export interface WriteOptions {
  /** dtype of the tensors that do not name their own (default F32). */
  dtype?: FloatDtype;
}

const BYTES: Record<FloatDtype, number> = { F32: 4, F16: 2, BF16: 2 };

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The BF16 bit pattern nearest to float32(x) (ties to even); NaN becomes the quiet NaN 0x7fc0. */
export function toBF16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  if (Number.isNaN(f32[0])) return ((bits >>> 16) & 0x8000) | 0x7fc0;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

function roundHalfEven(v: number): number {
  const f = Math.floor(v), diff = v - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** The F16 bit pattern nearest to float32(x) (ties to even, overflow to ±Inf); NaN becomes 0x7e00. */
export function toF16Bits(x: number): number {
  const v = Math.fround(x);
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a >= 65520) return sign | 0x7c00; // 65504 is the largest half; 65520 is halfway to 2^16
  if (a < 2 ** -14) return sign | roundHalfEven(a * 2 ** 24); // subnormal (1024 rounds up to 0x0400, the least normal)
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  let m = roundHalfEven((a / 2 ** e - 1) * 1024);
  if (m === 1024) { m = 0; e++; }
  return sign | ((e + 15) << 10) | m;
}

export function writeSafetensors(tensors: Record<string, F32Tensor>, metadata?: Record<string, string>, options: WriteOptions = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  const entries = Object.entries(tensors);
  for (const [name, t] of entries) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`writeSafetensors: ${name} has shape [${t.shape}] but ${t.data.length} values`);
    const dtype = t.dtype ?? options.dtype ?? 'F32';
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + BYTES[dtype] * n] };
    offset += BYTES[dtype] * n;
  }
  const json = JSON.stringify(header);
  const utf8 = new TextEncoder();
  let headerBytes = utf8.encode(json);
  const pad = (8 - (headerBytes.length % 8)) % 8;
  if (pad) headerBytes = utf8.encode(json + ' '.repeat(pad));

  const out = new Uint8Array(8 + headerBytes.length + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, headerBytes.length, true);
  view.setUint32(4, 0, true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const [, t] of entries) {
    const dtype = t.dtype ?? options.dtype ?? 'F32';
    for (let i = 0; i < t.data.length; i++) {
      if (dtype === 'F32') { view.setFloat32(at, t.data[i], true); at += 4; }
      else { view.setUint16(at, dtype === 'F16' ? toF16Bits(t.data[i]) : toBF16Bits(t.data[i]), true); at += 2; }
    }
  }
  return out;
}

/**
 * A sharded checkpoint as files: `shards` safetensors files named like Hugging Face's
 * (model-00001-of-00003.safetensors, …), tensors dealt round-robin in the order given, and
 * model.safetensors.index.json mapping each tensor to its file.
 */
export function writeShardedSafetensors(tensors: Record<string, F32Tensor>, shards: number, options: WriteOptions = {}): Record<string, Uint8Array> {
  const pad = (i: number) => String(i).padStart(5, '0');
  const fileName = (i: number) => `model-${pad(i + 1)}-of-${pad(shards)}.safetensors`;
  const parts: Record<string, F32Tensor>[] = Array.from({ length: shards }, () => ({}));
  const weightMap: Record<string, string> = {};
  Object.entries(tensors).forEach(([name, t], i) => {
    parts[i % shards][name] = t;
    weightMap[name] = fileName(i % shards);
  });
  const files: Record<string, Uint8Array> = {};
  let total = 0;
  parts.forEach((p, i) => {
    files[fileName(i)] = writeSafetensors(p, { format: 'pt' }, options);
    total += files[fileName(i)].length;
  });
  files['model.safetensors.index.json'] = new TextEncoder().encode(
    JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  return files;
}
