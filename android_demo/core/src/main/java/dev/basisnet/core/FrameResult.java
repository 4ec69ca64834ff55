package dev.basisnet.core;

/** One frame's answer, delivered in submission order; exactly one per accepted frame. */
public final class FrameResult {
    public final long index;
    public final int label;
    public final float confidence;
    public final String stage; // "lightweight" (early exit) or "specialist"
    public final double lightweightMs;
    public final double specialistMs; // 0 on an early exit
    public final double synthesisMs; // pre-synthesized form: time spent re-synthesizing, else 0
    public final double latencyMs; // submission to result, queueing included
    public final Throwable error; // non-null when a stage failed for this frame

    FrameResult(long index, int label, float confidence, String stage, double lightweightMs, double specialistMs,
                double synthesisMs, double latencyMs, Throwable error) {
        this.index = index;
        this.label = label;
        this.confidence = confidence;
        this.stage = stage;
        this.lightweightMs = lightweightMs;
        this.specialistMs = specialistMs;
        this.synthesisMs = synthesisMs;
        this.latencyMs = latencyMs;
        this.error = error;
    }

    public boolean earlyExit() {
        return "lightweight".equals(stage);
    }
}
