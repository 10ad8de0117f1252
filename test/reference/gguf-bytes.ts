// A GGUF byte builder for tests that must write what a correct writer never would: lying counts,
// lengths past the end, overlapping or misaligned offsets, unknown types. Every field is given
// explicitly; nothing is checked.

export type RawValue =
  | { t: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'bool' | 'u64' | 'i64' | 'f64'; v: number }
  | { t: 'str'; v: string; len?: number }
  | { t: 'arr'; elem: number; v: RawValue[]; count?: number }
  | { t: 'raw'; type: number; bytes: number[] };

export interface RawTensor { name: string; ne: number[]; type: number; offset: number; dims?: number }

export interface RawGguf {
  magic?: number;
  version?: number;
  kvs: [string, RawValue][];
  tensors: RawTensor[];
  tensorCount?: number;
  kvCount?: number;
  /** Bytes after the header (the data section, starting at the padded end of the header). */
  data?: Uint8Array;
  alignment?: number;
}

const TYPE: Record<string, number> = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, str: 8, arr: 9, u64: 10, i64: 11, f64: 12 };

export function rawGguf(g: RawGguf): Uint8Array {
  const out: number[] = [];
  const u32 = (v: number) => { const b = new DataView(new ArrayBuffer(4)); b.setUint32(0, v >>> 0, true); out.push(...new Uint8Array(b.buffer)); };
  const u64 = (v: number | bigint) => { const b = new DataView(new ArrayBuffer(8)); b.setBigUint64(0, BigInt(v), true); out.push(...new Uint8Array(b.buffer)); };
  const str = (s: string, len?: number) => { const b = new TextEncoder().encode(s); u64(len ?? b.length); out.push(...b); };
  const value = (v: RawValue, withType: boolean) => {
    if (v.t === 'raw') { if (withType) u32(v.type); out.push(...v.bytes); return; }
    if (withType) u32(TYPE[v.t]);
    const dv = new DataView(new ArrayBuffer(8));
    switch (v.t) {
      case 'u8': case 'bool': out.push(v.v & 255); return;
      case 'i8': dv.setInt8(0, v.v); out.push(dv.getUint8(0)); return;
      case 'u16': case 'i16': dv.setUint16(0, v.v & 0xffff, true); out.push(...new Uint8Array(dv.buffer, 0, 2)); return;
      case 'u32': u32(v.v); return;
      case 'i32': dv.setInt32(0, v.v, true); out.push(...new Uint8Array(dv.buffer, 0, 4)); return;
      case 'f32': dv.setFloat32(0, v.v, true); out.push(...new Uint8Array(dv.buffer, 0, 4)); return;
      case 'u64': case 'i64': u64(BigInt.asUintN(64, BigInt(v.v))); return;
      case 'f64': dv.setFloat64(0, v.v, true); out.push(...new Uint8Array(dv.buffer)); return;
      case 'str': str(v.v, v.len); return;
      case 'arr': u32(v.elem); u64(v.count ?? v.v.length); for (const x of v.v) value(x, false); return;
    }
  };
  u32(g.magic ?? 0x46554747);
  u32(g.version ?? 3);
  u64(g.tensorCount ?? g.tensors.length);
  u64(g.kvCount ?? g.kvs.length);
  for (const [k, v] of g.kvs) { str(k); value(v, true); }
  for (const t of g.tensors) {
    str(t.name);
    u32(t.dims ?? t.ne.length);
    for (const n of t.ne) u64(n);
    u32(t.type);
    u64(t.offset);
  }
  const align = g.alignment ?? 32;
  while (out.length % align) out.push(0);
  const bytes = new Uint8Array(out.length + (g.data?.length ?? 0));
  bytes.set(out);
  if (g.data) bytes.set(g.data, out.length);
  return bytes;
}
