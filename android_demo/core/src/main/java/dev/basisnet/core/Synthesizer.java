package dev.basisnet.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * The pre-synthesized specialist, built on the device: mix each non-shared conv's bases with
 * one coefficient set and write the result into a copy of the template at the byte offsets the
 * patch table recorded at export. No flatbuffer rebuild; the output is an ordinary .tflite.
 *
 * <p>This is a port of {@code basisnet_deploy.synthesis.synthesize} and is byte-identical to it
 * (checked by the Python test suite): the mix is the same float32 multiply-then-add sequence
 * over k, int8 re-quantization is symmetric per output channel with round-half-even, and
 * float16 uses round-to-nearest-even like NumPy.
 *
 * <p>With {@link CompactBases} (the int8 bases, a quarter of the bytes) it is a port of
 * {@code compact_bases.synthesize_reference} and of {@code FastSynthesizer(..., compact=...)},
 * byte-identical to both (the Python golden-vector tests check it). The arithmetic is the one
 * {@code basisnet_deploy/artifacts/fast_synthesis.py} defines, all float32, every product and sum
 * rounded on its own (Java {@code float} {@code *} and {@code +}; never {@code Math.fma}):
 * multipliers {@code m_k = a[k] * scales[k, c]}; {@code w = q8[0] * m_0}, then
 * {@code w = w + q8[k] * m_k}; then the same per-channel quantization as the float path.
 */
public final class Synthesizer {
    private final byte[] template;
    private final List<Patch> table;
    private final BasesFile bases; // float32 bases, or null
    private final CompactBases compact; // int8 bases, or null
    private final int k;

    /** From the float32 bases (specialist_bases.bin). */
    public Synthesizer(byte[] template, List<Patch> table, BasesFile bases, int k) {
        this(template, table, bases, null, k);
    }

    /** From the compact int8 bases (specialist_bases_int8.bin). */
    public Synthesizer(byte[] template, List<Patch> table, CompactBases compact, int k) {
        this(template, table, null, compact, k);
    }

    private Synthesizer(byte[] template, List<Patch> table, BasesFile bases, CompactBases compact, int k) {
        this.template = template;
        this.table = table;
        this.bases = bases;
        this.compact = compact;
        this.k = k;
        checkDisjoint(table, template.length);
        for (Patch p : table) {
            if (compact != null) {
                checkCompact(compact, p, k);
            } else {
                BasesFile.Entry e = bases.entry(p.layer);
                if (e == null || e.elements() != k * p.elements()) {
                    throw new ManifestException("specialist_bases.bin: '" + p.layer + "' does not hold " + k + " bases of "
                            + java.util.Arrays.toString(p.shape) + "; the assets come from different exports, re-run android-assets");
                }
            }
            long end = (long) p.weightOffset + (long) p.elements() * bytesPerWeight(p.dtype);
            if (end > template.length) {
                throw new ManifestException("specialist_presynth.tflite: patch '" + p.layer + "' ends at byte " + end
                        + " past the template's " + template.length + " bytes; the template is truncated or from another export");
            }
        }
    }

    /** Whether this synthesizer reads the compact int8 bases. */
    public boolean compact() {
        return compact != null;
    }

    private static void checkCompact(CompactBases compact, Patch p, int k) {
        String f = CompactBases.FILE + ": '" + p.layer;
        String fix = "; the assets come from different exports, re-run android-assets";
        CompactBases.Entry q = compact.entry(p.layer + "/q8");
        if (q == null || q.elements() != k * p.elements()) {
            throw new ManifestException(f + "/q8' does not hold " + k + " bases of " + java.util.Arrays.toString(p.shape) + fix);
        }
        CompactBases.Entry s = compact.entry(p.layer + "/scales");
        if (s == null || s.elements() != k * p.channels()) {
            throw new ManifestException(f + "/scales' does not hold " + k + "x" + p.channels() + " scales" + fix);
        }
        FloatBuffer scales = compact.scales(p.layer);
        for (int i = 0; i < scales.limit(); i++) {
            float v = scales.get(i);
            if (!(v > 0) || Float.isInfinite(v)) {
                throw new ManifestException(f + "/scales' holds a non-finite or non-positive scale; re-run android-assets");
            }
        }
        if (p.dtype.equals("int8") && p.hasBias()) {
            CompactBases.Entry b = compact.entry(p.layer + "/bias");
            if (b == null || b.elements() != p.channels()) {
                throw new ManifestException(f + "/bias' is missing or not " + p.channels() + " values" + fix);
            }
        }
    }

    /** Refuses a table whose writes overlap: one layer would overwrite another's bytes. */
    /** No two patches share a byte, and every write (kernel, scales, bias) lies inside the template. */
    private static void checkDisjoint(List<Patch> table, int templateLength) {
        List<long[]> ranges = new ArrayList<>();
        for (Patch p : table) {
            ranges.add(new long[] {p.weightOffset, (long) p.weightOffset + (long) p.elements() * bytesPerWeight(p.dtype)});
            if (p.dtype.equals("int8")) {
                int c = p.channels();
                int[] offs = p.hasBias() ? new int[] {p.scaleOffset, p.biasOffset, p.biasScaleOffset}
                        : new int[] {p.scaleOffset};
                for (int off : offs) ranges.add(new long[] {off, off + 4L * c});
            }
        }
        ranges.sort(Comparator.comparingLong((long[] r) -> r[0]));
        for (long[] r : ranges) {
            if (r[0] < 0 || r[1] > templateLength) {
                throw new ManifestException("specialist_patches.json: a patch writes bytes " + r[0] + "-" + r[1]
                        + ", past the template's " + templateLength + " bytes; the template is truncated or from another export");
            }
        }
        for (int i = 1; i < ranges.size(); i++) {
            if (ranges.get(i)[0] < ranges.get(i - 1)[1]) {
                throw new ManifestException("specialist_patches.json: two patches share bytes at offset "
                        + ranges.get(i)[0] + "; re-export with this basisnet-deploy version");
            }
        }
    }

    /** Model bytes for one coefficient set, rows [L][K]. */
    public byte[] synthesize(float[][] coefficients) {
        byte[] out = template.clone();
        ByteBuffer buf = ByteBuffer.wrap(out).order(ByteOrder.LITTLE_ENDIAN);
        for (Patch p : table) {
            float[] a = coefficients[p.slot];
            if (a.length != k) throw new IllegalArgumentException("coefficients: row " + p.slot + " has " + a.length + " values, expected " + k);
            float[] w = compact != null ? mixCompact(compact.q8(p.layer), compact.scales(p.layer), a, p)
                    : mix(bases.tensor(p.layer), a, p.elements());
            switch (p.dtype) {
                case "float32":
                    for (int i = 0; i < w.length; i++) buf.putFloat(p.weightOffset + 4 * i, w[i]);
                    break;
                case "float16":
                    for (int i = 0; i < w.length; i++) buf.putShort(p.weightOffset + 2 * i, toHalf(w[i]));
                    break;
                default:
                    writeInt8(buf, p, w);
            }
        }
        return out;
    }

    /** sum_k a_k W_k, accumulated in float32 in the order k = 0, 1, ..., K-1. */
    static float[] mix(FloatBuffer basis, float[] a, int n) {
        float[] acc = new float[n];
        float a0 = a[0];
        for (int i = 0; i < n; i++) acc[i] = basis.get(i) * a0;
        for (int k = 1; k < a.length; k++) {
            float ak = a[k];
            int base = k * n;
            for (int i = 0; i < n; i++) acc[i] += basis.get(base + i) * ak;
        }
        return acc;
    }

    /**
     * The compact bases' kernel for row a: {@code m_k[c] = a[k] * scales[k, c]}, then
     * {@code w = q8[0] * m_0[c]} and {@code w = w + q8[k] * m_k[c]} for k = 1..K-1, each op a
     * float32 op rounded on its own (the order of {@code compact_bases.mixed_kernel}).
     */
    static float[] mixCompact(ByteBuffer q8, FloatBuffer scales, float[] a, Patch p) {
        int n = p.elements(), channels = p.channels(), inner = p.channelStride();
        int outer = n / (channels * inner);
        float[] m = new float[a.length * channels];
        for (int kk = 0; kk < a.length; kk++) {
            for (int c = 0; c < channels; c++) m[kk * channels + c] = a[kk] * scales.get(kk * channels + c);
        }
        float[] w = new float[n];
        for (int kk = 0; kk < a.length; kk++) {
            int base = kk * n;
            for (int o = 0, i = 0; o < outer; o++) {
                for (int c = 0; c < channels; c++) {
                    float mk = m[kk * channels + c];
                    for (int j = 0; j < inner; j++, i++) {
                        float b = q8.get(base + i); // int8 -> float32: exact
                        w[i] = kk == 0 ? b * mk : w[i] + b * mk;
                    }
                }
            }
        }
        return w;
    }

    private void writeInt8(ByteBuffer buf, Patch p, float[] w) {
        int channels = p.channels();
        int stride = p.channelStride();
        FloatBuffer bias = !p.hasBias() ? null
                : compact != null ? compact.floats(p.layer + "/bias") : bases.tensor(p.layer + "/bias");
        float inputScale = (float) p.inputScale;
        float[] scale = perChannelScale(w, p, channels, bias, inputScale);
        for (int i = 0; i < w.length; i++) {
            int c = (i / stride) % channels;
            float q = (float) Math.rint(w[i] / scale[c]);
            buf.put(p.weightOffset + i, (byte) (int) Math.max(-127f, Math.min(127f, q)));
        }
        for (int c = 0; c < channels; c++) buf.putFloat(p.scaleOffset + 4 * c, scale[c]);
        if (bias == null) return; // e.g. ONNX depthwise convs: BN stays a Mul/Add after them
        for (int c = 0; c < channels; c++) {
            float biasScale = inputScale * scale[c];
            float q = (float) Math.rint(bias.get(c) / biasScale);
            buf.putInt(p.biasOffset + 4 * c, (int) q); // |q| about 2^30 at most by the scale's floor; (int) saturates
            buf.putFloat(p.biasScaleOffset + 4 * c, biasScale);
        }
    }

    /**
     * max |w| / 127 per channel, 1e-9 where not > 0; with a bias, then raised to
     * {@code |bias[c]| / (inputScale * 2^30)} so the int32 bias of a (near) zero channel fits
     * instead of saturating. Python's {@code synthesis.quantize_per_channel} with
     * {@code bias_scale_floor}.
     */
    static float[] perChannelScale(float[] w, Patch p, int channels, FloatBuffer bias, float inputScale) {
        float[] max = new float[channels];
        int stride = p.channelStride();
        for (int i = 0; i < w.length; i++) {
            int c = (i / stride) % channels;
            max[c] = Math.max(max[c], Math.abs(w[i]));
        }
        float[] scale = new float[channels];
        for (int c = 0; c < channels; c++) {
            float s = max[c] / 127.0f;
            s = s > 0 ? s : 1e-9f;
            if (bias != null) {
                float floor = Math.abs(bias.get(c)) / (inputScale * 1073741824.0f);
                s = floor > s ? floor : s;
            }
            scale[c] = s;
        }
        return scale;
    }

    private static int bytesPerWeight(String dtype) {
        return dtype.equals("float32") ? 4 : dtype.equals("float16") ? 2 : 1;
    }

    /** IEEE binary16 bits of a float, round to nearest even (NumPy's astype(float16)). */
    static short toHalf(float f) {
        int bits = Float.floatToRawIntBits(f);
        int sign = (bits >>> 16) & 0x8000;
        int exp = (bits >>> 23) & 0xFF;
        int mant = bits & 0x7FFFFF;
        if (exp == 0xFF) { // inf or NaN
            return (short) (sign | 0x7C00 | (mant != 0 ? 0x200 | (mant >>> 13) : 0));
        }
        int e = exp - 127 + 15;
        if (e >= 0x1F) return (short) (sign | 0x7C00); // overflow to inf
        if (e <= 0) { // subnormal half, or zero
            if (e < -10) return (short) sign;
            int m = mant | 0x800000;
            int shift = 14 - e;
            int half = m >>> shift;
            int rem = m & ((1 << shift) - 1);
            int mid = 1 << (shift - 1);
            if (rem > mid || (rem == mid && (half & 1) != 0)) half++;
            return (short) (sign | half);
        }
        int half = (e << 10) | (mant >>> 13);
        int rem = mant & 0x1FFF;
        if (rem > 0x1000 || (rem == 0x1000 && (half & 1) != 0)) half++; // may carry into the exponent: correct
        return (short) (sign | half);
    }
}
