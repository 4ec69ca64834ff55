package dev.basisnet.core;

/**
 * When the pre-synthesized specialist is rebuilt; the same rule as the Python runner's
 * {@code ResynthesisPolicy}: frames share one synthesized model until a frame's coefficients
 * differ from the ones it was built from by more than {@code tolerance} (max abs), or
 * {@code every} frames have used it. Tolerance 0 re-synthesizes for every distinct coefficient
 * set, which is exact.
 */
public final class ResynthesisPolicy {
    public final double tolerance;
    public final int every; // 0: no frame limit

    public ResynthesisPolicy(double tolerance, int every) {
        if (tolerance < 0 || every < 0) throw new IllegalArgumentException("tolerance and every must be >= 0");
        this.tolerance = tolerance;
        this.every = every;
    }

    public boolean needed(float[][] current, float[][] coefficients, int uses) {
        if (current == null) return true;
        if (every > 0 && uses >= every) return true;
        float max = 0f;
        for (int l = 0; l < coefficients.length; l++) {
            for (int k = 0; k < coefficients[l].length; k++) {
                max = Math.max(max, Math.abs(coefficients[l][k] - current[l][k]));
            }
        }
        return (double) max > tolerance;
    }
}
