package dev.basisnet.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;

class SynthesizerTest {
    private static final String TABLE = "[{\"layer\": \"a\", \"slot\": 1, \"kind\": \"conv\", \"shape\": [2, 1, 1, 3],"
            + " \"dtype\": \"int8\", \"weight_offset\": 8, \"scale_offset\": 16, \"bias_offset\": 24,"
            + " \"bias_scale_offset\": 32, \"input_scale\": 0.5},"
            + " {\"layer\": \"b\", \"slot\": 0, \"kind\": \"depthwise\", \"shape\": [1, 1, 2, 2],"
            + " \"dtype\": \"float32\", \"weight_offset\": 40, \"scale_offset\": -1, \"bias_offset\": -1,"
            + " \"bias_scale_offset\": -1, \"input_scale\": 0.0}]";

    private static BasesFile bases() {
        // K = 2. "a": [2, 2,1,1,3]; "a/bias": [2]; "b": [2, 1,1,2,2].
        float[] a = {1, -2, 3, 4, 5, 6, /* k=1 */ -1, 0, 1, 2, 2, -8};
        float[] bias = {0.25f, -1f};
        float[] b = {1, 2, 3, 4, /* k=1 */ 10, 20, 30, 40};
        ByteBuffer buf = ByteBuffer.allocate(4 * (a.length + bias.length + b.length)).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : a) buf.putFloat(v);
        for (float v : bias) buf.putFloat(v);
        for (float v : b) buf.putFloat(v);
        Map<String, BasesFile.Entry> index = Map.of(
                "a", new BasesFile.Entry(0, new int[] {2, 2, 1, 1, 3}),
                "a/bias", new BasesFile.Entry(48, new int[] {2}),
                "b", new BasesFile.Entry(56, new int[] {2, 1, 1, 2, 2}));
        return new BasesFile(buf.rewind(), index);
    }

    @Test
    void writesOnlyAtThePatchOffsetsWithPerChannelInt8() {
        byte[] template = new byte[64];
        for (int i = 0; i < template.length; i++) template[i] = (byte) 0x5A;
        List<Patch> table = Patch.parseTable(TABLE);
        Synthesizer s = new Synthesizer(template, table, bases(), 2);
        byte[] out = s.synthesize(new float[][] {{0.5f, 0.5f}, {0.25f, 0.75f}});

        ByteBuffer b = ByteBuffer.wrap(out).order(ByteOrder.LITTLE_ENDIAN);
        // untouched bytes
        for (int i : new int[] {0, 7, 14, 15, 56, 63}) assertEquals((byte) 0x5A, out[i], "byte " + i);
        // "a" mixed with slot 1 = (0.25, 0.75): [-0.5, -0.5, 1.5, 2.5, 2.75, -4.5]
        float s0 = 1.5f / 127f, s1 = 4.5f / 127f;
        assertEquals(s0, b.getFloat(16));
        assertEquals(s1, b.getFloat(20));
        byte[] q = new byte[6];
        System.arraycopy(out, 8, q, 0, 6);
        assertArrayEquals(new byte[] {(byte) Math.rint(-0.5f / s0), (byte) Math.rint(-0.5f / s0), 127,
                (byte) Math.rint(2.5f / s1), (byte) Math.rint(2.75f / s1), -127}, q);
        assertEquals((int) Math.rint(0.25f / (0.5f * s0)), b.getInt(24));
        assertEquals((int) Math.rint(-1f / (0.5f * s1)), b.getInt(28));
        assertEquals(0.5f * s0, b.getFloat(32));
        // "b" mixed with slot 0 = (0.5, 0.5), float32 in place
        assertEquals(5.5f, b.getFloat(40));
        assertEquals(11f, b.getFloat(44));
        assertEquals(16.5f, b.getFloat(48));
        assertEquals(22f, b.getFloat(52));
        assertEquals((byte) 0x5A, template[40], "the template itself is not modified");
    }

    @Test
    void onnxLayoutUsesTheTableAxisAndSkipsAMissingBias() {
        // ONNX depthwise kernel [C=2, 1, 1, 2], channel axis 0, int8, no conv bias (BN is a Mul/Add).
        String table = "[{\"layer\": \"b\", \"slot\": 0, \"kind\": \"depthwise\", \"shape\": [2, 1, 1, 2],"
                + " \"dtype\": \"int8\", \"weight_offset\": 0, \"scale_offset\": 4, \"bias_offset\": -1,"
                + " \"bias_scale_offset\": -1, \"input_scale\": 0.5, \"axis\": 0}]";
        byte[] template = new byte[16];
        java.util.Arrays.fill(template, (byte) 0x5A);
        Synthesizer s = new Synthesizer(template, Patch.parseTable(table), bases(), 2);
        byte[] out = s.synthesize(new float[][] {{0.5f, 0.5f}});
        // "b" mixed (0.5, 0.5): [5.5, 11, 16.5, 22]; channel 0 = {5.5, 11}, channel 1 = {16.5, 22}
        ByteBuffer b = ByteBuffer.wrap(out).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(11f / 127f, b.getFloat(4));
        assertEquals(22f / 127f, b.getFloat(8));
        assertArrayEquals(new byte[] {(byte) Math.rint(5.5f / (11f / 127f)), 127, (byte) Math.rint(16.5f / (22f / 127f)), 127},
                java.util.Arrays.copyOfRange(out, 0, 4));
        for (int i = 12; i < 16; i++) assertEquals((byte) 0x5A, out[i], "no bias written");
    }

    @Test
    void refusesAssetsThatDoNotFitTogether() {
        List<Patch> table = Patch.parseTable(TABLE);
        ManifestException e = assertThrows(ManifestException.class,
                () -> new Synthesizer(new byte[50], table, bases(), 2));
        assertTrue(e.getMessage().contains("truncated"), e.getMessage());
        e = assertThrows(ManifestException.class, () -> new Synthesizer(new byte[64], table, bases(), 3));
        assertTrue(e.getMessage().contains("different exports"), e.getMessage());
        String shared = TABLE.replace("\"bias_offset\": 24", "\"bias_offset\": 40"); // onto b's kernel
        e = assertThrows(ManifestException.class, () -> new Synthesizer(new byte[64], Patch.parseTable(shared), bases(), 2));
        assertTrue(e.getMessage().contains("share bytes"), e.getMessage());
        e = assertThrows(ManifestException.class, () -> Patch.parseTable("{\"not\": \"a table\"}"));
        assertTrue(e.getMessage().contains("specialist_patches.json"), e.getMessage());
        String scalesOutside = TABLE.replace("\"scale_offset\": 16", "\"scale_offset\": 60"); // 60..68 of 64
        e = assertThrows(ManifestException.class,
                () -> new Synthesizer(new byte[64], Patch.parseTable(scalesOutside), bases(), 2));
        assertTrue(e.getMessage().contains("bytes 60-68"), e.getMessage());
        String perTensor = TABLE.replace("\"input_scale\": 0.5}", "\"input_scale\": 0.5, \"per_tensor\": true}");
        e = assertThrows(ManifestException.class, () -> Patch.parseTable(perTensor));
        assertTrue(e.getMessage().contains("ONNX"), e.getMessage());
        String int64Bias = TABLE.replace("\"input_scale\": 0.5}", "\"input_scale\": 0.5, \"bias_dtype\": \"int64\"}");
        e = assertThrows(ManifestException.class, () -> Patch.parseTable(int64Bias));
        assertTrue(e.getMessage().contains("int16 activations"), e.getMessage());
    }

    @Test
    void halfPrecisionRoundsToNearestEven() {
        assertEquals((short) 0x3C00, Synthesizer.toHalf(1f));
        assertEquals((short) 0xC000, Synthesizer.toHalf(-2f));
        assertEquals((short) 0x7BFF, Synthesizer.toHalf(65504f));
        assertEquals((short) 0x7C00, Synthesizer.toHalf(65520f)); // rounds up to inf
        assertEquals((short) 0x0001, Synthesizer.toHalf(5.9604645e-8f)); // smallest subnormal
        assertEquals((short) 0x0000, Synthesizer.toHalf(2.9802322e-8f)); // exactly half of it: ties to even (0)
        assertEquals((short) 0x3C00, Synthesizer.toHalf(1f + 0x1p-11f)); // tie between 1 and 1+2^-10: even
        assertEquals((short) 0x3C02, Synthesizer.toHalf(1f + 3 * 0x1p-11f)); // tie: rounds to even 0x3C02
        assertEquals((short) 0x7E00, (short) (Synthesizer.toHalf(Float.NaN) & 0x7E00));
    }

    @Test
    void presynthSpecialistFollowsThePolicy() throws Exception {
        byte[] template = new byte[64];
        Synthesizer s = new Synthesizer(template, Patch.parseTable(TABLE), bases(), 2);
        int[] loads = {0};
        int[] closes = {0};
        PresynthSpecialist<Integer> p = new PresynthSpecialist<>(s, new ResynthesisPolicy(0.05, 3), bytes -> {
            loads[0]++;
            return new Stages.Specialist<Integer>() {
                @Override
                public float[] run(Integer frame, float[][] c) {
                    return new float[] {bytes[40]};
                }

                @Override
                public String processor() {
                    return "fake";
                }

                @Override
                public void close() {
                    closes[0]++;
                }
            };
        });
        float[][] c1 = {{0.5f, 0.5f}, {0.5f, 0.5f}};
        float[][] near = {{0.52f, 0.48f}, {0.5f, 0.5f}};
        float[][] far = {{0.9f, 0.1f}, {0.5f, 0.5f}};
        p.run(0, c1);
        assertTrue(p.lastSynthesisMs() > 0);
        p.run(0, near); // within tolerance: reuse
        assertEquals(0.0, p.lastSynthesisMs());
        p.run(0, near);
        p.run(0, near); // every = 3 uses: rebuild
        p.run(0, far); // beyond tolerance: rebuild
        assertEquals(3, p.resyntheses());
        assertEquals(3, loads[0]);
        assertEquals(2, closes[0], "the replaced model is closed");
        p.close();
        assertEquals(3, closes[0]);
    }

    @Test
    void policyMatchesThePythonRule() {
        ResynthesisPolicy exact = new ResynthesisPolicy(0, 0);
        float[][] a = {{0.25f, 0.75f}};
        assertTrue(exact.needed(null, a, 0));
        assertEquals(false, exact.needed(a, new float[][] {{0.25f, 0.75f}}, 1000));
        assertTrue(exact.needed(a, new float[][] {{0.25f, 0.7500001f}}, 1));
        assertThrows(IllegalArgumentException.class, () -> new ResynthesisPolicy(-1, 0));
    }
}
