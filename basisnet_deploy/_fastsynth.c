/* Fused synthesis kernel: mix the K bases of each patched int8 conv, re-quantize it per output
 * channel and write kernel bytes, scales, int32 bias and bias scales straight into the model
 * buffer. Called through ctypes by basisnet_deploy/fast_synthesis.py, which also holds the
 * pure-NumPy fallback that must give the same bytes.
 *
 * The arithmetic is the format's definition (fast_synthesis.py's docstring states it), so it
 * must stay bit-identical to NumPy and to the Java core:
 *   - every float op is one IEEE float32 op, in the order written; this file is compiled with
 *     -ffp-contract=off and without -ffast-math, so no FMA and no reassociation;
 *   - round half to even with the 1.5 * 2^23 trick, exact for |x| <= 2^22 (here |x| <= ~127);
 *   - the per-channel max is taken on the bit patterns of |w| (for non-negative floats the
 *     integer order is the float order), which vectorizes without -ffast-math.
 * Little-endian hosts only (the Python side checks).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(BN_NO_CLONES)
/* One build runs on any x86-64; AVX-512 / AVX2 clones are picked at load time. */
#define BN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define BN_CLONES
#endif
#if defined(__GNUC__)
#define BN_INLINE static inline __attribute__((always_inline))
#define BN_EXPORT __attribute__((visibility("default")))
#else
#define BN_INLINE static __forceinline
#define BN_EXPORT __declspec(dllexport)
#define restrict __restrict
#endif

enum { D_BASES, D_BSCALES, D_BIAS, D_OUTER, D_C, D_INNER, D_SLOT, D_WOFF, D_SOFF, D_BOFF, D_BSOFF,
       D_INSCALE, D_N };

/* acc[j] = mixed value of n contiguous elements; b points at basis 0, bases are `stride` apart.
 * s: NULL (float32 bases), or per-basis scales, scalar (s_vec 0: s[k * s_stride]) or one per
 * element (s_vec 1: s[k * s_stride + j]). Compact element: (float(q) * s) * a, float: w * a. */
BN_INLINE void mix_f32(const float *restrict b, int64_t stride, const float *restrict a, int64_t K,
                       int64_t n, float *restrict acc) {
    const float a0 = a[0];
    for (int64_t j = 0; j < n; j++) acc[j] = b[j] * a0;
    for (int64_t k = 1; k < K; k++) {
        const float *restrict bk = b + k * stride;
        const float ak = a[k];
        for (int64_t j = 0; j < n; j++) acc[j] = acc[j] + bk[j] * ak;
    }
}

BN_INLINE void mix_i8_scalar(const int8_t *restrict b, int64_t stride, const float *restrict s,
                             int64_t s_stride, const float *restrict a, int64_t K, int64_t n,
                             float *restrict acc) {
    const float a0 = a[0], s0 = s[0];
    for (int64_t j = 0; j < n; j++) acc[j] = ((float)b[j] * s0) * a0;
    for (int64_t k = 1; k < K; k++) {
        const int8_t *restrict bk = b + k * stride;
        const float ak = a[k], sk = s[k * s_stride];
        for (int64_t j = 0; j < n; j++) acc[j] = acc[j] + ((float)bk[j] * sk) * ak;
    }
}

BN_INLINE void mix_i8_vector(const int8_t *restrict b, int64_t stride, const float *restrict s,
                             int64_t s_stride, const float *restrict a, int64_t K, int64_t n,
                             float *restrict acc) {
    const float a0 = a[0];
    for (int64_t j = 0; j < n; j++) acc[j] = ((float)b[j] * s[j]) * a0;
    for (int64_t k = 1; k < K; k++) {
        const int8_t *restrict bk = b + k * stride;
        const float *restrict sk = s + k * s_stride;
        const float ak = a[k];
        for (int64_t j = 0; j < n; j++) acc[j] = acc[j] + ((float)bk[j] * sk[j]) * ak;
    }
}

BN_INLINE uint32_t max_abs_bits(const float *restrict w, int64_t n, uint32_t m) {
    for (int64_t j = 0; j < n; j++) {
        uint32_t u;
        memcpy(&u, &w[j], 4);
        u &= 0x7fffffffu;
        m = u > m ? u : m;
    }
    return m;
}

BN_INLINE float channel_scale(uint32_t max_bits) {
    float m, s;
    memcpy(&m, &max_bits, 4);
    s = m / 127.0f;
    return s > 0.0f ? s : (float)1e-9; /* (float)1e-9: NumPy's np.float32(1e-9) */
}

/* int8 of w / scale, round half to even then clip to [-127, 127]. Adding 1.5 * 2^23 rounds
 * to an integer (exact for |x| <= 2^22; here |x| <= ~127), which then sits in the low mantissa
 * bits; clipping on integers keeps the loop branch-free so it vectorizes. */
BN_INLINE int8_t to_int8(float x) {
    const float y = x + 12582912.0f;
    uint32_t u;
    memcpy(&u, &y, 4);
    int32_t r = (int32_t)u - 0x4B400000;
    r = r < -127 ? -127 : r;
    r = r > 127 ? 127 : r;
    return (int8_t)r;
}

BN_INLINE void quantize(const float *restrict w, int64_t n, float scale, int8_t *restrict out) {
    for (int64_t j = 0; j < n; j++) out[j] = to_int8(w[j] / scale);
}

BN_INLINE void quantize_vec(const float *restrict w, int64_t n, const float *restrict scale,
                            int8_t *restrict out) {
    for (int64_t j = 0; j < n; j++) out[j] = to_int8(w[j] / scale[j]);
}

/* Output channel = a contiguous block (TFLite OHWI conv, ONNX OIHW): one channel at a time in
 * `scratch` (L1-sized), so no layer-sized float kernel is ever written. */
BN_CLONES static void layer_by_channel(const int64_t *d, const float *a, int64_t K, uint8_t *buf,
                                       float *scratch, float *scales) {
    const int64_t C = d[D_C], inner = d[D_INNER], stride = C * inner;
    const float *bs = (const float *)(intptr_t)d[D_BSCALES];
    int8_t *out = (int8_t *)(buf + d[D_WOFF]);
    for (int64_t c = 0; c < C; c++) {
        if (bs)
            mix_i8_scalar((const int8_t *)(intptr_t)d[D_BASES] + c * inner, stride, bs + c, C, a, K,
                          inner, scratch);
        else
            mix_f32((const float *)(intptr_t)d[D_BASES] + c * inner, stride, a, K, inner, scratch);
        scales[c] = channel_scale(max_abs_bits(scratch, inner, 0));
        quantize(scratch, inner, scales[c], out + c * inner);
    }
}

/* Channel axis inside the layout (TFLite depthwise [1, H, W, C]): these kernels are small, so
 * the whole layer is mixed into `scratch` first, then each channel's max is known. */
BN_CLONES static void layer_whole(const int64_t *d, const float *a, int64_t K, uint8_t *buf,
                                  float *scratch, float *scales) {
    const int64_t outer = d[D_OUTER], C = d[D_C], inner = d[D_INNER], row = C * inner;
    const int64_t total = outer * row;
    const float *bs = (const float *)(intptr_t)d[D_BSCALES];
    int8_t *out = (int8_t *)(buf + d[D_WOFF]);
    for (int64_t o = 0; o < outer; o++) {
        const int64_t at = o * row;
        if (!bs)
            mix_f32((const float *)(intptr_t)d[D_BASES] + at, total, a, K, row, scratch + at);
        else if (inner == 1)
            mix_i8_vector((const int8_t *)(intptr_t)d[D_BASES] + at, total, bs, C, a, K, C, scratch + at);
        else
            for (int64_t c = 0; c < C; c++)
                mix_i8_scalar((const int8_t *)(intptr_t)d[D_BASES] + at + c * inner, total, bs + c, C, a,
                              K, inner, scratch + at + c * inner);
    }
    for (int64_t c = 0; c < C; c++) {
        uint32_t m = 0;
        for (int64_t o = 0; o < outer; o++) m = max_abs_bits(scratch + o * row + c * inner, inner, m);
        scales[c] = channel_scale(m);
    }
    for (int64_t o = 0; o < outer; o++) {
        if (inner == 1)
            quantize_vec(scratch + o * row, C, scales, out + o * row);
        else
            for (int64_t c = 0; c < C; c++)
                quantize(scratch + o * row + c * inner, inner, scales[c], out + o * row + c * inner);
    }
}

/* Scales, and the int32 bias re-quantized with them: bias_scale = input_scale * scale[c],
 * bias_q = round_half_even(bias[c] / bias_scale), saturated to int32. */
static void write_channel_data(const int64_t *d, uint8_t *buf, const float *scales) {
    const int64_t C = d[D_C];
    const float *bias = (const float *)(intptr_t)d[D_BIAS];
    float in_scale;
    uint32_t in_bits = (uint32_t)d[D_INSCALE];
    memcpy(&in_scale, &in_bits, 4);
    memcpy(buf + d[D_SOFF], scales, 4 * (size_t)C);
    if (d[D_BOFF] < 0) return; /* a conv without bias (ONNX depthwise) */
    for (int64_t c = 0; c < C; c++) {
        const float bias_scale = in_scale * scales[c];
        const float q = rintf(bias[c] / bias_scale);
        const int32_t v = q >= 2147483648.0f ? INT32_MAX : q < -2147483648.0f ? INT32_MIN : (int32_t)q;
        memcpy(buf + d[D_BOFF] + 4 * c, &v, 4);
        memcpy(buf + d[D_BSOFF] + 4 * c, &bias_scale, 4);
    }
}

/* All layers with todo[i] != 0. desc: int64[n_layers][D_N] (see the enum and fast_synthesis.py);
 * coeff: float32 [L, K]; scratch: the largest per-layer need; scales: the largest C. */
BN_EXPORT int bn_synthesize(const int64_t *desc, int64_t n_layers,
                                                         const float *coeff, int64_t K,
                                                         const uint8_t *todo, uint8_t *buf,
                                                         float *scratch, float *scales) {
    for (int64_t i = 0; i < n_layers; i++) {
        const int64_t *d = desc + i * D_N;
        if (!todo[i]) continue;
        const float *a = coeff + d[D_SLOT] * K;
        if (d[D_OUTER] == 1)
            layer_by_channel(d, a, K, buf, scratch, scales);
        else
            layer_whole(d, a, K, buf, scratch, scales);
        write_channel_data(d, buf, scales);
    }
    return 0;
}

/* The descriptor width, so the Python side can check it builds rows of the right size. */
BN_EXPORT int bn_desc_fields(void) { return D_N; }

/* A real (empty) CPython module, so setuptools builds and names it like any extension; the
 * kernel itself is reached through ctypes. */
static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_fastsynth",
                                       "Fused synthesis kernel; see fast_synthesis.py.", -1,
                                       NULL, NULL, NULL, NULL, NULL};
PyMODINIT_FUNC PyInit__fastsynth(void) { return PyModule_Create(&moduledef); }
