# llama.cpp's own quantizer (llama_model_quantize, what the llama-quantize tool runs), called
# through ctypes from the libllama that node-llama-cpp's prebuilt binary package ships. Used by
# test/llama-cpp.test.ts to make GGUF files with llama.cpp's tooling when no such file can be
# downloaded. Usage: llama-quantize.py LIBDIR IN.gguf OUT.gguf FTYPE [mixed]
# (FTYPE 7 = Q8_0, 2 = Q4_0, 15 = Q4_K_M, 17 = Q5_K_M). Quantizes "pure" (every quantizable
# matrix to FTYPE's type, no mixture of types), or with `mixed` as llama-quantize does by default
# (the _M types: some tensors, such as attn_v and ffn_down of some layers and output, one type wider).
import ctypes
import glob
import sys

libdir, src, dst, ftype = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
mixed = len(sys.argv) > 5 and sys.argv[5] == 'mixed'
ggml = ctypes.CDLL(glob.glob(libdir + '/libggml.*so')[0], mode=ctypes.RTLD_GLOBAL)
ggml.ggml_backend_load_all_from_path(libdir.encode())
lib = ctypes.CDLL(glob.glob(libdir + '/libllama.*so')[0])


class Params(ctypes.Structure):
    # llama_model_quantize_params, as raw bytes: the struct is returned through a hidden pointer
    # (it is larger than 16 bytes), so a bigger buffer is safe; the fields set are checked first.
    _fields_ = [('raw', ctypes.c_ubyte * 256)]


lib.llama_model_quantize_default_params.restype = Params
p = lib.llama_model_quantize_default_params()
# int32 nthread, int32 ftype, int32 output_tensor_type, int32 token_embedding_type, then the bools
# allow_requantize, quantize_output_tensor (default true), only_copy, pure.
if list(p.raw[16:20]) != [0, 1, 0, 0]:
    sys.exit(f'unexpected llama_model_quantize_params layout: {list(p.raw[:24])}')
p.raw[4] = ftype
p.raw[19] = 0 if mixed else 1
lib.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(Params)]
sys.exit(lib.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p)))
