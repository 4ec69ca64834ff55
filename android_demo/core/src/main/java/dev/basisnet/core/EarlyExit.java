package dev.basisnet.core;

/**
 * The early-termination rule: the lightweight model answers when its top softmax probability
 * reaches the threshold (calibrated on held-out images by {@code calibrate-threshold}); otherwise
 * the specialist runs. A null threshold never exits.
 */
public final class EarlyExit {
    private EarlyExit() {
    }

    /** Softmax in float32, max-subtracted as NumPy's runner does it. */
    public static float[] softmax(float[] logits) {
        float max = Float.NEGATIVE_INFINITY;
        for (float v : logits) max = Math.max(max, v);
        float[] p = new float[logits.length];
        float sum = 0f;
        for (int i = 0; i < logits.length; i++) {
            p[i] = (float) Math.exp(logits[i] - max);
            sum += p[i];
        }
        for (int i = 0; i < p.length; i++) p[i] /= sum;
        return p;
    }

    /** Index of the largest value; the first one on ties (NumPy's argmax). */
    public static int argmax(float[] v) {
        int best = 0;
        for (int i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
        return best;
    }

    public static boolean exits(float confidence, Float threshold) {
        return threshold != null && confidence >= threshold;
    }
}
