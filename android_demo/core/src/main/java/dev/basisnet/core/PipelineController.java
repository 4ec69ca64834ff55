package dev.basisnet.core;

import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;

/**
 * Owns the running {@link TwoStagePipeline} across settings changes and teardown, so the app's
 * view model stays a thin shell:
 * <ul>
 *   <li>{@link #offer} never throws and never blocks: with no pipeline (starting, failed,
 *       closed) or a full one, the frame is refused and given back to {@code release} at once.</li>
 *   <li>{@link #apply} rebuilds on a private control thread, never the caller's; the old
 *       pipeline drains (bounded) before the new one is created, so the two never hold the GPU
 *       together. Requests are coalesced: a request superseded before it started is skipped.</li>
 *   <li>Results of an old pipeline that arrive while it drains are not reported.</li>
 *   <li>{@link #closeAsync} tears down on the control thread and returns at once (the app calls
 *       it from {@code onCleared}, on the main thread); it is idempotent.</li>
 * </ul>
 */
public final class PipelineController<S, F> {
    /** Builds a pipeline for the settings; called on the control thread. */
    public interface Factory<S, F> {
        TwoStagePipeline<F> create(S settings, TwoStagePipeline.Listener listener, Consumer<? super F> release)
                throws Exception;
    }

    /** What the UI hears; called on the control thread or, for results, the specialist thread. */
    public interface Events<S> {
        void onStarting(S settings);

        void onRunning(S settings, String lightweightProcessor, String specialistProcessor);

        void onFailed(S settings, Exception error);

        void onResult(FrameResult result, PipelineStats.Snapshot stats);
    }

    private static final class Running<F> {
        final long generation;
        final TwoStagePipeline<F> pipeline;

        Running(long generation, TwoStagePipeline<F> pipeline) {
            this.generation = generation;
            this.pipeline = pipeline;
        }
    }

    private final Factory<S, F> factory;
    private final Events<S> events;
    private final Consumer<? super F> release;
    private final int statsWindow;
    private final long closeWaitMs;
    private final ExecutorService control = Executors.newSingleThreadExecutor(r -> {
        Thread t = new Thread(r, "basisnet-control");
        t.setDaemon(true); // teardown must never keep the process alive
        return t;
    });
    private final AtomicReference<Running<F>> current = new AtomicReference<>();
    private final AtomicLong requested = new AtomicLong();
    private final AtomicReference<Future<?>> closing = new AtomicReference<>();
    private final AtomicLong refused = new AtomicLong();
    private volatile Float threshold;
    private volatile boolean thresholdSet; // a slider move outranks the settings a rebuild started from

    public PipelineController(Factory<S, F> factory, Events<S> events, Consumer<? super F> release,
                              int statsWindow, long closeWaitMs) {
        this.factory = factory;
        this.events = events;
        this.release = release;
        this.statsWindow = statsWindow;
        this.closeWaitMs = closeWaitMs;
    }

    /** Hands the frame to the running pipeline; false (frame released) if there is none or it is full. */
    public boolean offer(F frame) {
        Running<F> r = current.get();
        if (r != null && r.pipeline.offer(frame)) return true;
        refused.incrementAndGet();
        release.accept(frame);
        return false;
    }

    /** Frames refused so far: pipeline full, starting, failed or closed. */
    public long refused() {
        return refused.get();
    }

    /** Replaces the pipeline with one for {@code settings}; returns at once. No-op once closed. */
    public Future<?> apply(S settings) {
        long generation = requested.incrementAndGet();
        try {
            return control.submit(() -> rebuild(generation, settings));
        } catch (java.util.concurrent.RejectedExecutionException e) {
            return java.util.concurrent.CompletableFuture.completedFuture(null); // closed
        }
    }

    /** Changes the early-exit threshold of the running pipeline (and of the ones built after). */
    public void setThreshold(Float value) {
        threshold = value;
        thresholdSet = true;
        Running<F> r = current.get();
        if (r != null) r.pipeline.setThreshold(value);
    }

    /** Stops everything off the caller's thread; idempotent. The future ends when the stages are closed. */
    public Future<?> closeAsync() {
        Future<?> f = closing.get();
        if (f != null) return f;
        synchronized (closing) {
            if (closing.get() != null) return closing.get();
            requested.incrementAndGet(); // a rebuild still queued is now stale and skipped
            closing.set(control.submit(this::stopCurrent));
            control.shutdown();
            return closing.get();
        }
    }

    public boolean isClosed() {
        return closing.get() != null;
    }

    private void rebuild(long generation, S settings) {
        if (generation != requested.get()) return; // superseded by a newer request or by close
        stopCurrent();
        events.onStarting(settings);
        PipelineStats stats = new PipelineStats(statsWindow);
        TwoStagePipeline<F> next = null;
        try {
            next = factory.create(settings, result -> report(generation, stats, result), release);
            if (thresholdSet) next.setThreshold(threshold);
            next.awaitReady();
        } catch (Exception e) {
            if (next != null) next.close(closeWaitMs);
            events.onFailed(settings, e);
            return;
        }
        current.set(new Running<>(generation, next));
        events.onRunning(settings, next.lightweightProcessor(), next.specialistProcessor());
    }

    private void stopCurrent() {
        Running<F> old = current.getAndSet(null);
        if (old != null) old.pipeline.close(closeWaitMs);
    }

    private void report(long generation, PipelineStats stats, FrameResult result) {
        stats.add(result);
        Running<F> r = current.get();
        if (r != null && r.generation == generation) events.onResult(result, stats.snapshot());
    }
}
