package dev.basisnet.core;

import java.util.ArrayDeque;
import java.util.Deque;

/**
 * What the overlay shows, from the stream of results: per-stage median latency over the last
 * {@code window} results, throughput over the same window, and the early-exit rate since start.
 * Thread-safe; feed it from the listener.
 */
public final class PipelineStats {
    public static final class Snapshot {
        public final long frames;
        public final long earlyExits;
        public final long failures;
        public final double exitRate;
        public final double lightweightMs;
        public final double specialistMs; // over frames that ran the specialist
        public final double synthesisMs; // over frames that re-synthesized
        public final double latencyMs;
        public final double framesPerSecond;
        public final long resyntheses; // frames that rebuilt the pre-synthesized specialist
        public final double resynthesisRate; // resyntheses / frames that ran the specialist

        Snapshot(long frames, long earlyExits, long failures, double lightweightMs, double specialistMs,
                 double synthesisMs, double latencyMs, double framesPerSecond, long resyntheses) {
            this.frames = frames;
            this.earlyExits = earlyExits;
            this.failures = failures;
            this.exitRate = frames == 0 ? 0 : (double) earlyExits / frames;
            this.lightweightMs = lightweightMs;
            this.specialistMs = specialistMs;
            this.synthesisMs = synthesisMs;
            this.latencyMs = latencyMs;
            this.framesPerSecond = framesPerSecond;
            this.resyntheses = resyntheses;
            long specialistFrames = frames - earlyExits;
            this.resynthesisRate = specialistFrames == 0 ? 0 : (double) resyntheses / specialistFrames;
        }
    }

    private final int window;
    private final Deque<double[]> recent = new ArrayDeque<>(); // {time s, light, spec, synth, latency}
    private long frames, exits, failures, resyntheses;

    public PipelineStats(int window) {
        if (window < 2) throw new IllegalArgumentException("window must be >= 2");
        this.window = window;
    }

    public synchronized void add(FrameResult r) {
        add(r, System.nanoTime() / 1e9);
    }

    synchronized void add(FrameResult r, double nowSeconds) {
        if (r.error != null) {
            failures++;
            return;
        }
        frames++;
        if (r.earlyExit()) exits++;
        if (r.synthesisMs > 0) resyntheses++;
        recent.addLast(new double[] {nowSeconds, r.lightweightMs, r.earlyExit() ? Double.NaN : r.specialistMs,
                r.synthesisMs > 0 ? r.synthesisMs : Double.NaN, r.latencyMs});
        while (recent.size() > window) recent.removeFirst();
    }

    public synchronized Snapshot snapshot() {
        double fps = 0;
        if (recent.size() >= 2) {
            double span = recent.peekLast()[0] - recent.peekFirst()[0];
            if (span > 0) fps = (recent.size() - 1) / span;
        }
        return new Snapshot(frames, exits, failures, median(1), median(2), median(3), median(4), fps, resyntheses);
    }

    private double median(int column) {
        double[] v = recent.stream().mapToDouble(r -> r[column]).filter(x -> !Double.isNaN(x)).sorted().toArray();
        if (v.length == 0) return Double.NaN;
        return v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    }
}
