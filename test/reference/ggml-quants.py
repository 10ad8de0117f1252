# ggml's Q8_0 and Q4_0 quantisation and its f16/bf16 rounding in numpy, written the way gguf-py
# (llama.cpp's Python package, used by convert_hf_to_gguf.py) computes them: an independent
# implementation for test/quant-blocks.test.ts. Reads f32 values from stdin, writes on stdout the
# Q8_0 bytes, the Q4_0 bytes, the f16 bits and the bf16 bits, each section prefixed by its length.
# `ggml-quants.py dequant TYPE` reads blocks of TYPE (Q5_0, Q3_K, IQ4_NL, IQ4_XS) and writes their
# values as f32, vectorised from ggml's block layouts (an implementation apart from decodeRow's).
import sys
import numpy as np

IQ4 = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float32)


def dequant(kind, raw):
    if kind == 'Q5_0':
        b = raw.reshape(-1, 22)
        d = b[:, :2].copy().view('<f2').astype(np.float32)
        qh = b[:, 2:6].copy().view('<u4')
        bits = ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.int32)
        low = np.concatenate([b[:, 6:] & 15, b[:, 6:] >> 4], axis=1).astype(np.int32)
        return (d * ((low | (bits << 4)) - 16).astype(np.float32)).reshape(-1)
    if kind == 'IQ4_NL':
        b = raw.reshape(-1, 18)
        d = b[:, :2].copy().view('<f2').astype(np.float32)
        return (d * IQ4[np.concatenate([b[:, 2:] & 15, b[:, 2:] >> 4], axis=1)]).reshape(-1)
    if kind == 'IQ4_XS':
        b = raw.reshape(-1, 136)
        d = b[:, :2].copy().view('<f2').astype(np.float32)
        sh = b[:, 2:4].copy().view('<u2').astype(np.int32)
        k = np.arange(8)
        ls = ((b[:, 4 + k // 2] >> (4 * (k % 2))) & 15).astype(np.int32) | (((sh >> (2 * k)) & 3) << 4)
        dl = (d * (ls - 32).astype(np.float32))[:, :, None]  # [blocks, 8, 1]
        qs = b[:, 8:].reshape(-1, 8, 16)
        return (dl * IQ4[np.concatenate([qs & 15, qs >> 4], axis=2)]).reshape(-1)
    if kind == 'Q3_K':
        b = raw.reshape(-1, 110)
        hm, qs, sc = b[:, :32], b[:, 32:96], b[:, 96:108].astype(np.int32)
        d = b[:, 108:110].copy().view('<f2').astype(np.float32)
        j = np.arange(16)
        low = np.where(j < 8, sc[:, j % 8] & 15, sc[:, j % 8] >> 4)
        s = low | (((sc[:, 8 + j % 4] >> (2 * (j // 4))) & 3) << 4)
        dl = np.repeat(d * (s - 32).astype(np.float32), 16, axis=1)  # [blocks, 256]
        i = np.arange(256)
        q = ((qs[:, 32 * (i // 128) + i % 32] >> (2 * ((i // 32) % 4))) & 3).astype(np.int32)
        q -= np.where((hm[:, i % 32] >> (i // 32)) & 1, 0, 4)
        return (dl * q.astype(np.float32)).reshape(-1)
    raise SystemExit(f'unknown type {kind}')


if len(sys.argv) > 2 and sys.argv[1] == 'dequant':
    with np.errstate(over='ignore', invalid='ignore'):
        y = dequant(sys.argv[2], np.frombuffer(sys.stdin.buffer.read(), dtype=np.uint8))
    sys.stdout.buffer.write(y.astype('<f4').tobytes())
    sys.exit(0)

x = np.frombuffer(sys.stdin.buffer.read(), dtype='<f4')


def roundf(a):  # C's roundf: half away from zero
    return np.sign(a) * np.floor(np.abs(a) + np.float32(0.5))


def q8_0(x):
    blocks = x.reshape(-1, 32)
    d = np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide='ignore'):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    qs = roundf(blocks * inv).astype(np.int8)
    return np.concatenate([d.astype('<f2').view(np.uint8), qs.view(np.uint8)], axis=1).tobytes()


def q4_0(x):
    blocks = x.reshape(-1, 32)
    imax = np.abs(blocks).argmax(axis=-1, keepdims=True)
    mx = np.take_along_axis(blocks, imax, axis=-1)
    d = (mx / np.float32(-8)).astype(np.float32)
    with np.errstate(divide='ignore'):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    q = np.trunc(blocks * inv + np.float32(8.5)).astype(np.float32)
    q = np.clip(q, 0, 15).astype(np.uint8).reshape(-1, 2, 16)
    qs = q[:, 0, :] | (q[:, 1, :] << np.uint8(4))
    return np.concatenate([d.astype('<f2').view(np.uint8), qs], axis=1).tobytes()


def bf16(x):
    n = x.view(np.uint32).astype(np.uint64)
    n = np.where((n & 0x7fffffff) > 0x7f800000, (n & 0xffff0000) | (64 << 16), n)
    return ((n + (0x7fff + ((n >> 16) & 1))) >> 16).astype('<u2').tobytes()


out = sys.stdout.buffer
for part in (q8_0(x), q4_0(x), x.astype('<f2').tobytes(), bf16(x)):
    out.write(len(part).to_bytes(8, 'little'))
    out.write(part)
