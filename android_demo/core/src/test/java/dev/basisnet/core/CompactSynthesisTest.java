package dev.basisnet.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import org.junit.jupiter.api.Test;

/**
 * Synthesis from the compact int8 bases: the arithmetic of fast_synthesis.py's docstring, pinned
 * on values where a different implementation gives different bytes (a fused multiply-add,
 * rounding half away from zero, a missing 1e-9 scale, no int32 saturation). The byte equality
 * with Python on a real export is tests/test_android_core.py's job.
 */
class CompactSynthesisTest {
    /** One int8 patch: kernel at 0, scales at 16, bias at 24, bias scales at 32; template 48 bytes. */
    private static List<Patch> table(String kind, int[] shape, boolean bias) {
        return Patch.parseTable("[{\"layer\": \"a\", \"slot\": 0, \"kind\": \"" + kind + "\", \"shape\": "
                + Arrays.toString(shape) + ", \"dtype\": \"int8\", \"weight_offset\": 0, \"scale_offset\": 16,"
                + " \"bias_offset\": " + (bias ? 24 : -1) + ", \"bias_scale_offset\": " + (bias ? 32 : -1)
                + ", \"input_scale\": 0.5}]");
    }

    /** specialist_bases_int8.bin as android-assets lays it out: q8, scales, bias, 4-byte aligned. */
    static CompactBases compact(String layer, int k, int[] shape, byte[] q8, float[] scales, float[] bias) {
        int scalesAt = (q8.length + 3) / 4 * 4;
        int biasAt = scalesAt + 4 * scales.length;
        ByteBuffer buf = ByteBuffer.allocate(biasAt + 4 * (bias == null ? 0 : bias.length)).order(ByteOrder.LITTLE_ENDIAN);
        buf.put(q8);
        buf.position(scalesAt);
        for (float v : scales) buf.putFloat(v);
        if (bias != null) for (float v : bias) buf.putFloat(v);
        int[] q8Shape = new int[shape.length + 1];
        q8Shape[0] = k;
        System.arraycopy(shape, 0, q8Shape, 1, shape.length);
        Map<String, CompactBases.Entry> index = new LinkedHashMap<>();
        index.put(layer + "/q8", new CompactBases.Entry(0, q8Shape, "int8"));
        index.put(layer + "/scales", new CompactBases.Entry(scalesAt, new int[] {k, scales.length / k}, "float32"));
        if (bias != null) index.put(layer + "/bias", new CompactBases.Entry(biasAt, new int[] {bias.length}, "float32"));
        return new CompactBases(buf.rewind(), index);
    }

    private static ByteBuffer le(byte[] b) {
        return ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
    }

    @Test
    void eachProductAndSumIsRoundedOnItsOwnNoFusedMultiplyAdd() {
        // K = 2, one element: w = (-3 * 1) + (3 * (1 + 2^-23)). The product rounds (a tie, to
        // even) to 3 + 2^-21, so w = 2^-21; a fused multiply-add keeps 3 * 2^-23 instead.
        float s1 = 0x1.000002p0f;
        assertEquals(0x1p-21f, -3f * 1f + 3f * s1);
        assertNotEquals(0x1p-21f, Math.fma(3f, s1, -3f), "the case must tell fused from separate");
        Synthesizer s = new Synthesizer(new byte[48], table("conv", new int[] {1, 1, 1, 1}, false),
                compact("a", 2, new int[] {1, 1, 1, 1}, new byte[] {-3, 3}, new float[] {1f, s1}, null), 2);
        byte[] out = s.synthesize(new float[][] {{1f, 1f}});
        assertEquals(0x1p-21f / 127f, le(out).getFloat(16), "scale = max|w| / 127 of the unfused w");
        assertEquals(127, out[0]);
    }

    @Test
    void multiplierIsCoefficientTimesScaleThenTimesQ8() {
        // m = a * scale first: 111 * (0.1f * 3f) differs from (111 * 3f) * 0.1f (dequantize-then-mix)
        float a = 0.1f, sc = 3f;
        assertNotEquals(111f * (a * sc), (111f * sc) * a, "the case must tell the two orders apart");
        ByteBuffer q8 = ByteBuffer.wrap(new byte[] {111});
        float[] w = Synthesizer.mixCompact(q8, ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putFloat(0, sc)
                .asFloatBuffer(), new float[] {a}, table("conv", new int[] {1, 1, 1, 1}, false).get(0));
        assertEquals(111f * (a * sc), w[0]);
    }

    @Test
    void kernelAndBiasRoundHalfToEven() {
        // a = (1, 0.5), scales 1: w = q0 + q1/2 = {127, 2.5, -0.5, 3.5, -2.5}; max 127 -> s = 1 exactly.
        byte[] q8 = {127, 2, 0, 3, -2, /* k=1 */ 0, 1, -1, 1, -1};
        Synthesizer s = new Synthesizer(new byte[48], table("conv", new int[] {1, 1, 1, 5}, true),
                compact("a", 2, new int[] {1, 1, 1, 5}, q8, new float[] {1f, 1f}, new float[] {1.25f}), 2);
        byte[] out = s.synthesize(new float[][] {{1f, 0.5f}});
        assertEquals(1f, le(out).getFloat(16));
        assertArrayEquals(new byte[] {127, 2, 0, 4, -2}, Arrays.copyOf(out, 5), "ties go to the even integer");
        assertEquals(0.5f, le(out).getFloat(32), "bias scale = input_scale * s");
        assertEquals(2, le(out).getInt(24), "1.25 / 0.5 = 2.5 rounds to 2");
    }

    @Test
    void allZeroChannelGetsScale1e9RaisedSoItsBiasFitsInt32() {
        // Coefficients 0: every channel is zero -> s = float32(1e-9). bias / (0.5 * 1e-9) would
        // be far beyond int32 for +-1000 (it saturated, losing the bias), so those channels'
        // scales rise to |bias| / (0.5 * 2^30) and the bias quantizes to +-2^30 exactly; a small
        // bias keeps scale 1e-9 and its rounded quotient.
        int[] shape = {3, 1, 1, 2};
        byte[] q8 = {1, 2, 3, 4, 5, 6, /* k=1 */ -1, -2, -3, -4, -5, -6};
        Synthesizer s = new Synthesizer(new byte[48], Patch.parseTable("[{\"layer\": \"a\", \"slot\": 0, \"kind\": \"conv\","
                + " \"shape\": [3, 1, 1, 2], \"dtype\": \"int8\", \"weight_offset\": 0, \"scale_offset\": 8,"
                + " \"bias_offset\": 20, \"bias_scale_offset\": 32, \"input_scale\": 0.5}]"),
                compact("a", 2, shape, q8, new float[] {1, 1, 1, 1, 1, 1}, new float[] {1000f, -1000f, 1e-7f}), 2);
        byte[] out = s.synthesize(new float[][] {{0f, 0f}});
        ByteBuffer b = le(out);
        float tiny = (float) 1e-9;
        float floor = 1000f / (0.5f * 1073741824.0f);
        for (int c = 0; c < 3; c++) {
            float want = c < 2 ? floor : tiny;
            assertEquals(want, b.getFloat(8 + 4 * c), "channel " + c);
            assertEquals(0.5f * want, b.getFloat(32 + 4 * c));
        }
        for (int i = 0; i < 6; i++) assertEquals(0, out[i]);
        assertEquals(1 << 30, b.getInt(20));
        assertEquals(-(1 << 30), b.getInt(24));
        assertEquals(1000f, b.getInt(20) * b.getFloat(32)); // the bias survives, exactly
        assertEquals(200, b.getInt(28)); // 1e-7f / 5e-10f: float32 quotient 200.00002, rounded
        // mixing to zero (q0 + q1 = 0 everywhere) gives the same scales as coefficients 0
        out = s.synthesize(new float[][] {{1f, 1f}});
        assertEquals(floor, le(out).getFloat(8));
        assertEquals(tiny, le(out).getFloat(16));
        s = new Synthesizer(new byte[48], table("conv", new int[] {2, 1, 1, 2}, false),
                compact("a", 1, new int[] {2, 1, 1, 2}, new byte[] {0, 0, 5, -127}, new float[] {1f, 2f}, null), 1);
        out = s.synthesize(new float[][] {{1f}});
        assertEquals(tiny, le(out).getFloat(16));
        assertEquals(254f / 127f, le(out).getFloat(20));
        assertArrayEquals(new byte[] {0, 0, 5, -127}, Arrays.copyOf(out, 4));
    }

    @Test
    void equalsTheDefinitionOnRandomLayersInBothLayouts() {
        // compact_bases.synthesize_reference: mix by the definition, then the float path's
        // quantization with one basis and coefficient 1 (w * 1 == w). K = 3, so the order of the
        // sums matters; depthwise puts the channel last, conv first.
        Random rng = new Random(7);
        for (String kind : new String[] {"conv", "depthwise"}) {
            int[] shape = kind.equals("conv") ? new int[] {4, 3, 3, 5} : new int[] {1, 3, 3, 4};
            Patch p = table(kind, shape, true).get(0);
            int k = 3, n = p.elements(), ch = p.channels();
            byte[] q8 = new byte[k * n];
            for (int i = 0; i < q8.length; i++) q8[i] = (byte) (rng.nextInt(255) - 127);
            float[] scales = new float[k * ch];
            for (int i = 0; i < scales.length; i++) scales[i] = (float) (0.001 + rng.nextDouble() * 0.05);
            float[] bias = new float[ch];
            for (int i = 0; i < ch; i++) bias[i] = (float) rng.nextGaussian();
            String t = "[{\"layer\": \"a\", \"slot\": 0, \"kind\": \"" + kind + "\", \"shape\": " + Arrays.toString(shape)
                    + ", \"dtype\": \"int8\", \"weight_offset\": 0, \"scale_offset\": 200, \"bias_offset\": 240,"
                    + " \"bias_scale_offset\": 280, \"input_scale\": 0.0123}]";
            List<Patch> tab = Patch.parseTable(t);
            Synthesizer s = new Synthesizer(new byte[320], tab, compact("a", k, shape, q8, scales, bias), k);
            for (int trial = 0; trial < 20; trial++) {
                float[] a = {(float) rng.nextGaussian(), (float) rng.nextGaussian(), (float) rng.nextGaussian()};
                float[] w = new float[n];
                int stride = p.channelStride();
                for (int i = 0; i < n; i++) {
                    int c = (i / stride) % ch;
                    w[i] = (float) q8[i] * (a[0] * scales[c]);
                    for (int kk = 1; kk < k; kk++) w[i] = w[i] + (float) q8[kk * n + i] * (a[kk] * scales[kk * ch + c]);
                }
                ByteBuffer one = ByteBuffer.allocate(4 * (n + ch)).order(ByteOrder.LITTLE_ENDIAN);
                for (float v : w) one.putFloat(v);
                for (float v : bias) one.putFloat(v);
                int[] wShape = new int[shape.length + 1];
                wShape[0] = 1;
                System.arraycopy(shape, 0, wShape, 1, shape.length);
                BasesFile ref = new BasesFile(one.rewind(), Map.of("a", new BasesFile.Entry(0, wShape),
                        "a/bias", new BasesFile.Entry(4L * n, new int[] {ch})));
                byte[] want = new Synthesizer(new byte[320], tab, ref, 1).synthesize(new float[][] {{1f}});
                assertArrayEquals(want, s.synthesize(new float[][] {a}), kind + " trial " + trial);
            }
        }
    }

    @Test
    void refusesCompactBasesThatDoNotFit() {
        List<Patch> t = table("conv", new int[] {2, 1, 1, 2}, true);
        byte[] q8 = {1, 2, 3, 4, 5, 6, 7, 8};
        ManifestException e = assertThrows(ManifestException.class, () -> new Synthesizer(new byte[48], t,
                compact("a", 2, new int[] {2, 1, 1, 2}, q8, new float[] {1, 1, 1, 1}, new float[] {0, 0}), 3));
        assertTrue(e.getMessage().contains("specialist_bases_int8.bin") && e.getMessage().contains("different exports"),
                e.getMessage());
        e = assertThrows(ManifestException.class, () -> new Synthesizer(new byte[48], t,
                compact("a", 2, new int[] {2, 1, 1, 2}, q8, new float[] {1, 0, 1, 1}, new float[] {0, 0}), 2));
        assertTrue(e.getMessage().contains("non-positive"), e.getMessage());
        e = assertThrows(ManifestException.class, () -> new Synthesizer(new byte[48], t,
                compact("a", 2, new int[] {2, 1, 1, 2}, q8, new float[] {1, 1, 1, 1}, null), 2));
        assertTrue(e.getMessage().contains("a/bias"), e.getMessage());
        e = assertThrows(ManifestException.class, () -> new CompactBases(ByteBuffer.allocate(4),
                Map.of("a/q8", new CompactBases.Entry(0, new int[] {2, 2, 1, 1, 2}, "int8"))));
        assertTrue(e.getMessage().contains("truncated"), e.getMessage());
        e = assertThrows(ManifestException.class, () -> new CompactBases(ByteBuffer.allocate(64),
                Map.of("a/scales", new CompactBases.Entry(0, new int[] {2, 2}, "int8"))));
        assertTrue(e.getMessage().contains("expected float32"), e.getMessage());
    }

    @Test
    void manifestIndexesTheCompactFileAndChecksItsFormat() {
        String raw8 = "\"bases_int8_raw\": {\"file\": \"specialist_bases_int8.bin\", \"format\": \"basisnet-compact-bases/1\","
                + " \"tensors\": {\"sp_L8_expand/q8\": {\"offset\": 0, \"shape\": [3, 4, 1, 1, 2], \"dtype\": \"int8\"},"
                + " \"sp_L8_expand/scales\": {\"offset\": 24, \"shape\": [3, 4], \"dtype\": \"float32\"}}},";
        String json = ManifestTest.MANIFEST.replace("\"bases_raw\":", raw8 + " \"bases_raw\":");
        Manifest m = Manifest.parse(json);
        assertEquals("specialist_bases_int8.bin", m.basesInt8RawFile);
        assertEquals(24, m.basesInt8RawIndex.get("sp_L8_expand/scales").offset);
        assertEquals("int8", m.basesInt8RawIndex.get("sp_L8_expand/q8").dtype);
        assertEquals(null, Manifest.parse(ManifestTest.MANIFEST).basesInt8RawFile, "older assets: float bases only");
        ManifestException e = assertThrows(ManifestException.class,
                () -> Manifest.parse(json.replace("compact-bases/1", "compact-bases/2")));
        assertTrue(e.getMessage().contains("bases_int8_raw.format"), e.getMessage());
    }
}
