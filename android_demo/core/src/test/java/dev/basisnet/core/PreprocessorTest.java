package dev.basisnet.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/** Properties only; equality with Pillow/NumPy is the Python suite's golden cross-check. */
class PreprocessorTest {
    private static Preprocessing pre(Preprocessing.Resize resize, Preprocessing.Interpolation f) {
        return new Preprocessing(resize, 0.875, -1.0, 1.0, f, 16, 32);
    }

    @Test
    void aFlatImageStaysFlatAndMapsToTheRange() {
        int[] px = new int[40 * 30];
        java.util.Arrays.fill(px, 0xFF00FF80); // r=0, g=255, b=128
        for (Preprocessing.Interpolation f : Preprocessing.Interpolation.values()) {
            for (Preprocessing.Resize r : Preprocessing.Resize.values()) {
                float[] t = new Preprocessor(pre(r, f)).tensor(px, 40, 30, 16);
                assertEquals(16 * 16 * 3, t.length);
                for (int i = 0; i < t.length; i += 3) {
                    assertEquals(-1f, t[i]);
                    assertEquals(1f, t[i + 1]);
                    assertEquals(128 / 255f * 2f - 1f, t[i + 2]);
                }
            }
        }
    }

    @Test
    void centerCropTakesTheMiddle() {
        // 64 x 32 image: left half black, right half white; the centre crop straddles the edge.
        int w = 64, h = 32;
        int[] px = new int[w * h];
        for (int y = 0; y < h; y++) for (int x = 0; x < w; x++) px[y * w + x] = x < 32 ? 0xFF000000 : 0xFFFFFFFF;
        Preprocessing p = new Preprocessing(Preprocessing.Resize.CENTER_CROP, 1.0, 0, 1, Preprocessing.Interpolation.NEAREST, 8, 8);
        int[] out = new Preprocessor(p).resized(px, w, h, 8);
        assertEquals(0xFF000000, out[0]);
        assertEquals(0xFFFFFFFF, out[7]);
    }

    @Test
    void quantizeRoundsHalfToEvenAndClips() {
        byte[] q = Preprocessor.quantize(new float[] {0.5f, 1.5f, -0.5f, 100f, -100f}, 1f, 0, false);
        assertArrayEquals(new byte[] {0, 2, 0, 100, -100}, q);
        q = Preprocessor.quantize(new float[] {1f, -1f, 0f}, 1f / 128f, -1, false);
        assertArrayEquals(new byte[] {127, -128, -1}, q);
        q = Preprocessor.quantize(new float[] {1f, -1f}, 1f / 128f, 128, true);
        assertEquals(255, q[0] & 0xFF);
        assertEquals(0, q[1] & 0xFF);
    }

    @Test
    void softmaxAndArgmax() {
        float[] p = EarlyExit.softmax(new float[] {1f, 3f, 3f});
        assertEquals(1, EarlyExit.argmax(p), "first of equal maxima, as NumPy");
        assertEquals(1.0, p[0] + p[1] + p[2], 1e-6);
        assertEquals(true, EarlyExit.exits(0.5f, 0.5f));
        assertEquals(false, EarlyExit.exits(0.49f, 0.5f));
    }

    @Test
    void statsReportMediansRateAndThroughput() {
        PipelineStats s = new PipelineStats(10);
        for (int i = 0; i < 10; i++) {
            boolean exit = i % 4 == 0;
            s.add(new FrameResult(i, 0, 0.9f, exit ? "lightweight" : "specialist", 2 + i % 2, exit ? 0 : 10,
                    i == 1 ? 5 : 0, 20, null), i * 0.1);
        }
        s.add(new FrameResult(10, -1, 0, "failed", 0, 0, 0, 0, new RuntimeException()), 1.0);
        PipelineStats.Snapshot snap = s.snapshot();
        assertEquals(10, snap.frames);
        assertEquals(3, snap.earlyExits);
        assertEquals(1, snap.failures);
        assertEquals(0.3, snap.exitRate, 1e-9);
        assertEquals(2.5, snap.lightweightMs, 1e-9);
        assertEquals(10, snap.specialistMs, 1e-9);
        assertEquals(5, snap.synthesisMs, 1e-9);
        assertEquals(10.0, snap.framesPerSecond, 1e-6);
    }
}
