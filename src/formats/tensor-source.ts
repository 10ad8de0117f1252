// What a checkpoint format offers the model: tensor names, shapes, and values read on demand.

/** Where a decoder reads its tensors from: an in-memory map or a safetensors file. */
export interface TensorSource {
  names(): Iterable<string>;
  shape(name: string): readonly number[] | undefined;
  /** Copy tensor `name` as f32 into `out` (whose length is its element count). */
  read(name: string, out: Float32Array): void;
}
