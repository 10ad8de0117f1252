// A minimal writer of ONNX models (ModelProto, protobuf wire format) for the bench's peer
// comparisons: a graph of nodes over named inputs, outputs and initializers (f32, int64, uint8,
// int8), nodes of the default domain or of onnxruntime's contrib ops (com.microsoft, e.g.
// MatMulNBits). Only the fields the bench needs are written; the field numbers are those of
// onnx/onnx.proto.
//
// The encoding is kept as a list of byte parts (a 1 GB initializer is one part, never copied
// until the whole model is written out), so a model of any size up to protobuf's 2 GiB limit
// can be built and written to a file piece by piece.

/** Protobuf-encoded bytes as parts, with their total length. */
export interface Encoded {
  len: number;
  parts: Uint8Array[];
}

const enc = new TextEncoder();

function varint(n: number | bigint): Uint8Array {
  let v = BigInt.asUintN(64, BigInt(n));
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return new Uint8Array(out);
}

class Msg {
  private readonly e: Encoded = { len: 0, parts: [] };
  private push(b: Uint8Array): void { this.e.parts.push(b); this.e.len += b.length; }
  private tag(field: number, wire: number): void { this.push(varint((field << 3) | wire)); }
  int(field: number, v: number): this { this.tag(field, 0); this.push(varint(v)); return this; }
  f32(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.push(b);
    return this;
  }
  bytes(field: number, b: Uint8Array): this { this.tag(field, 2); this.push(varint(b.length)); this.push(b); return this; }
  str(field: number, s: string): this { return this.bytes(field, enc.encode(s)); }
  msg(field: number, m: Msg): this {
    const inner = m.done();
    this.tag(field, 2);
    this.push(varint(inner.len));
    for (const p of inner.parts) this.push(p);
    return this;
  }
  done(): Encoded { return this.e; }
}

/** ONNX TensorProto.DataType values the bench uses. */
export const FLOAT = 1;
export const UINT8 = 2;
export const INT8 = 3;
export const INT64 = 7;

/** onnxruntime's contrib operators' domain (MatMulNBits, …). */
export const MS_DOMAIN = 'com.microsoft';

export type Dim = number | string;
export interface ValueInfo { name: string; type: number; shape: Dim[] }
export type AttrValue = number | number[] | string | { floats: number[] } | { float: number };
export interface NodeSpec { op: string; inputs: string[]; outputs: string[]; attrs?: Record<string, AttrValue>; name?: string; domain?: string }
export interface Initializer { name: string; dims: number[]; data: Float32Array | BigInt64Array | Uint8Array | Int8Array }

function dataType(data: Initializer['data']): number {
  if (data instanceof Float32Array) return FLOAT;
  if (data instanceof BigInt64Array) return INT64;
  return data instanceof Uint8Array ? UINT8 : INT8;
}

function valueInfo(v: ValueInfo): Msg {
  const shape = new Msg();
  for (const d of v.shape) shape.msg(1, typeof d === 'number' ? new Msg().int(1, d) : new Msg().str(2, d));
  const tensorType = new Msg().int(1, v.type).msg(2, shape);
  return new Msg().str(1, v.name).msg(2, new Msg().msg(1, tensorType));
}

function tensor(t: Initializer): Msg {
  const m = new Msg();
  for (const d of t.dims) m.int(1, d);
  m.int(2, dataType(t.data));
  m.str(8, t.name);
  // raw_data: little-endian bytes (every platform the bench runs on is little-endian).
  m.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  return m;
}

function attribute(name: string, v: AttrValue): Msg {
  const m = new Msg().str(1, name);
  // AttributeProto.type: FLOAT 1, INT 2, STRING 3, FLOATS 6, INTS 7
  if (typeof v === 'number') return m.int(3, v).int(20, 2);
  if (typeof v === 'string') return m.str(4, v).int(20, 3);
  if (Array.isArray(v)) { for (const x of v) m.int(8, x); return m.int(20, 7); }
  if ('float' in v) return m.f32(2, v.float).int(20, 1);
  for (const x of v.floats) m.f32(7, x);
  return m.int(20, 6);
}

function node(n: NodeSpec, i: number): Msg {
  const m = new Msg();
  for (const x of n.inputs) m.str(1, x);
  for (const x of n.outputs) m.str(2, x);
  m.str(3, n.name ?? `${n.op}_${i}`).str(4, n.op);
  if (n.domain) m.str(7, n.domain);
  for (const [k, v] of Object.entries(n.attrs ?? {})) m.msg(5, attribute(k, v));
  return m;
}

export interface GraphSpec {
  name: string;
  nodes: NodeSpec[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  initializers: Initializer[];
  /** Default-domain opset (default 17). */
  opset?: number;
}

/** Encode a ModelProto (IR version 8), importing com.microsoft (version 1) when a node uses it. */
export function encodeModel(g: GraphSpec): Encoded {
  const graph = new Msg();
  g.nodes.forEach((n, i) => graph.msg(1, node(n, i)));
  graph.str(2, g.name);
  for (const t of g.initializers) graph.msg(5, tensor(t));
  for (const v of g.inputs) graph.msg(11, valueInfo(v));
  for (const v of g.outputs) graph.msg(12, valueInfo(v));
  const model = new Msg()
    .int(1, 8)
    .str(2, 'mla-wasm bench')
    .msg(7, graph)
    .msg(8, new Msg().str(1, '').int(2, g.opset ?? 17));
  if (g.nodes.some((n) => n.domain === MS_DOMAIN)) model.msg(8, new Msg().str(1, MS_DOMAIN).int(2, 1));
  return model.done();
}

/** The model's bytes in one buffer. */
export function concat(e: Encoded): Uint8Array {
  const out = new Uint8Array(e.len);
  let at = 0;
  for (const p of e.parts) { out.set(p, at); at += p.length; }
  return out;
}

/**
 * A builder that names intermediate values: `b.op('MatMul', [x, w])` adds a node and returns
 * its output's name.
 */
export class GraphBuilder {
  readonly nodes: NodeSpec[] = [];
  readonly initializers: Initializer[] = [];
  private n = 0;

  op(op: string, inputs: string[], attrs?: Record<string, AttrValue>, outputName?: string, domain?: string): string {
    const out = outputName ?? `${op.toLowerCase()}_${this.n++}`;
    this.nodes.push({ op, inputs, outputs: [out], attrs, ...(domain ? { domain } : {}) });
    return out;
  }

  /** An op with several outputs. */
  opN(op: string, inputs: string[], outputs: number, attrs?: Record<string, AttrValue>): string[] {
    const outs = Array.from({ length: outputs }, (_, i) => `${op.toLowerCase()}_${this.n}_${i}`);
    this.n++;
    this.nodes.push({ op, inputs, outputs: outs, attrs });
    return outs;
  }

  f32(name: string, dims: number[], data: Float32Array): string {
    this.initializers.push({ name, dims, data });
    return name;
  }

  /** A uint8 or int8 initializer (quantised codes). */
  bytes(name: string, dims: number[], data: Uint8Array | Int8Array): string {
    this.initializers.push({ name, dims, data });
    return name;
  }

  i64(name: string, values: number[]): string {
    this.initializers.push({ name, dims: [values.length], data: BigInt64Array.from(values.map(BigInt)) });
    return name;
  }

  scalar(name: string, v: number): string {
    this.initializers.push({ name, dims: [], data: Float32Array.of(v) });
    return name;
  }
}

/** One MatMul: Y[M, N] = A[M, K] · B[K, N], B an initializer (the weights, [K, N] as ONNX stores them). */
export function matmulModel(M: number | string, K: number, N: number, b: Float32Array): Uint8Array {
  return concat(encodeModel({
    name: 'matmul',
    nodes: [{ op: 'MatMul', inputs: ['a', 'b'], outputs: ['y'] }],
    inputs: [{ name: 'a', type: FLOAT, shape: [M, K] }],
    outputs: [{ name: 'y', type: FLOAT, shape: [M, N] }],
    initializers: [{ name: 'b', dims: [K, N], data: b }],
  }));
}
