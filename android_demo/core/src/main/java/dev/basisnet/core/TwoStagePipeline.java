package dev.basisnet.core;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * The two-processor scheduler: the lightweight model on one single-thread executor, the
 * specialist on another, so while the specialist handles frame t the lightweight model previews
 * frame t+1 (the Python runner's design, on executors instead of queues).
 *
 * <ul>
 *   <li>Each stage is created, run and closed on its own thread (GPU contexts are thread-bound).</li>
 *   <li>Order: both executors are FIFO and every frame, early exits and failures included,
 *       passes through the specialist executor, so results arrive in submission order.</li>
 *   <li>Backpressure: at most {@code maxInFlight} frames are inside. {@link #offer} refuses a frame
 *       beyond that (a camera analyzer then simply drops it, like KEEP_ONLY_LATEST);
 *       {@link #submit} blocks instead. An accepted frame always gets exactly one result.</li>
 *   <li>{@link Mode#SEQUENTIAL} runs both stages on one thread, one frame at a time, for comparison.</li>
 *   <li>Lifecycle: {@link #offer} and {@link #submit} after {@link #close} are no-ops that return
 *       false (a camera frame racing a settings change must not throw on the analyzer thread);
 *       {@code close} is idempotent and waits for the frames inside for at most a bound.</li>
 *   <li>Every accepted frame is handed to the {@code release} callback once its result is
 *       delivered, so the caller can recycle its pixel buffer (see {@link FramePool}).</li>
 * </ul>
 */
public final class TwoStagePipeline<F> implements AutoCloseable {
    public enum Mode { PIPELINED, SEQUENTIAL }

    /** Receives results on the specialist thread, in order; keep it short (post to the UI). */
    public interface Listener {
        void onResult(FrameResult result);
    }

    private final Mode mode;
    private final ExecutorService lightExecutor;
    private final ExecutorService specialistExecutor;
    private final Future<Stages.Lightweight<F>> light;
    private final Future<Stages.Specialist<F>> specialist;
    private final Semaphore slots;
    private final Listener listener;
    private final Consumer<? super F> release;
    private final int maxInFlight;
    private final Object admission = new Object(); // makes "check closed, then enqueue" atomic against close
    private final AtomicLong nextIndex = new AtomicLong();
    private final AtomicLong rejected = new AtomicLong();
    private final AtomicLong listenerErrors = new AtomicLong();
    private volatile Float threshold;
    private volatile boolean closed;
    private Boolean closedCleanly; // guarded by admission; null until the first close finished

    public TwoStagePipeline(Stages.Factory<? extends Stages.Lightweight<F>> lightFactory,
                            Stages.Factory<? extends Stages.Specialist<F>> specialistFactory,
                            Float threshold, Mode mode, int maxInFlight, Listener listener) {
        this(lightFactory, specialistFactory, threshold, mode, maxInFlight, listener, frame -> { });
    }

    public TwoStagePipeline(Stages.Factory<? extends Stages.Lightweight<F>> lightFactory,
                            Stages.Factory<? extends Stages.Specialist<F>> specialistFactory,
                            Float threshold, Mode mode, int maxInFlight, Listener listener,
                            Consumer<? super F> release) {
        if (maxInFlight < 1) throw new IllegalArgumentException("maxInFlight must be >= 1");
        this.mode = mode;
        this.threshold = threshold;
        this.listener = listener;
        this.release = release;
        this.maxInFlight = maxInFlight;
        this.slots = new Semaphore(maxInFlight);
        this.lightExecutor = Executors.newSingleThreadExecutor(r -> new Thread(r, "basisnet-lightweight"));
        this.specialistExecutor = mode == Mode.SEQUENTIAL ? lightExecutor
                : Executors.newSingleThreadExecutor(r -> new Thread(r, "basisnet-specialist"));
        this.light = lightExecutor.submit(() -> (Stages.Lightweight<F>) lightFactory.create());
        this.specialist = specialistExecutor.submit(() -> (Stages.Specialist<F>) specialistFactory.create());
    }

    /** Waits for both stages to be created; rethrows a creation failure (e.g. no GPU). */
    public void awaitReady() throws Exception {
        unwrap(light);
        unwrap(specialist);
    }

    public String lightweightProcessor() {
        return processor(light);
    }

    public String specialistProcessor() {
        return processor(specialist);
    }

    public void setThreshold(Float threshold) {
        this.threshold = threshold;
    }

    public Float threshold() {
        return threshold;
    }

    /** Frames refused by {@link #offer} because the pipeline was full. */
    public long rejected() {
        return rejected.get();
    }

    /** Results whose listener threw (the result was still counted as delivered). */
    public long listenerErrors() {
        return listenerErrors.get();
    }

    /**
     * Accepts the frame unless {@code maxInFlight} frames are already inside or the pipeline is
     * closed; a refused frame stays the caller's (it is not passed to {@code release}).
     */
    public boolean offer(F frame) {
        synchronized (admission) {
            if (closed) return false;
            if (!slots.tryAcquire()) {
                rejected.incrementAndGet();
                return false;
            }
            enqueue(frame);
            return true;
        }
    }

    /** Accepts the frame, waiting for room; false (frame not taken) once the pipeline is closed. */
    public boolean submit(F frame) throws InterruptedException {
        while (true) {
            if (closed) return false;
            // Bounded waits, so a close() during the wait is noticed.
            if (!slots.tryAcquire(50, TimeUnit.MILLISECONDS)) continue;
            synchronized (admission) {
                if (closed) {
                    slots.release();
                    return false;
                }
                enqueue(frame);
                return true;
            }
        }
    }

    /** Frames accepted and not yet answered. */
    public int inFlight() {
        return maxInFlight - slots.availablePermits();
    }

    public boolean isClosed() {
        return closed;
    }

    private void enqueue(F frame) {
        long index = nextIndex.getAndIncrement();
        long submitted = System.nanoTime();
        lightExecutor.execute(() -> preview(index, frame, submitted));
    }

    private void preview(long index, F frame, long submitted) {
        Stages.Preview out = null;
        Throwable error = null;
        double ms = 0;
        try {
            Stages.Lightweight<F> stage = unwrap(light);
            long t = System.nanoTime();
            out = stage.run(frame);
            ms = (System.nanoTime() - t) / 1e6;
        } catch (Throwable e) {
            error = e;
        }
        final Stages.Preview preview = out;
        final Throwable failure = error;
        final double lightMs = ms;
        Runnable second = () -> answer(index, frame, submitted, preview, lightMs, failure);
        if (mode == Mode.SEQUENTIAL) {
            second.run();
        } else {
            specialistExecutor.execute(second);
        }
    }

    private void answer(long index, F frame, long submitted, Stages.Preview preview, double lightMs, Throwable error) {
        FrameResult result;
        try {
            if (error != null) throw error;
            float[] probs = EarlyExit.softmax(preview.logits);
            int label = EarlyExit.argmax(probs);
            if (EarlyExit.exits(probs[label], threshold)) {
                result = new FrameResult(index, label, probs[label], "lightweight", lightMs, 0, 0, since(submitted), null);
            } else {
                Stages.Specialist<F> stage = unwrap(specialist);
                long t = System.nanoTime();
                float[] logits = stage.run(frame, preview.coefficients);
                double ms = (System.nanoTime() - t) / 1e6;
                double synthesis = stage.lastSynthesisMs();
                float[] p = EarlyExit.softmax(logits);
                int l = EarlyExit.argmax(p);
                result = new FrameResult(index, l, p[l], "specialist", lightMs, ms - synthesis, synthesis,
                        since(submitted), null);
            }
        } catch (Throwable e) {
            result = new FrameResult(index, -1, 0f, "failed", lightMs, 0, 0, since(submitted), e);
        }
        try {
            listener.onResult(result);
        } catch (RuntimeException e) {
            // A throwing listener must not kill the specialist thread, which owns the specialist.
            listenerErrors.incrementAndGet();
        } finally {
            releaseQuietly(frame);
            slots.release();
        }
    }

    private void releaseQuietly(F frame) {
        try {
            release.accept(frame);
        } catch (RuntimeException e) {
            listenerErrors.incrementAndGet();
        }
    }

    /** {@link #close(long)} with {@link #DEFAULT_CLOSE_WAIT_MS}. */
    @Override
    public void close() {
        close(DEFAULT_CLOSE_WAIT_MS);
    }

    /** How long {@link #close()} waits for the frames inside before giving up on them. */
    public static final long DEFAULT_CLOSE_WAIT_MS = 3000;

    /**
     * Stops accepting frames, waits at most {@code waitMs} for the frames inside to be answered,
     * then closes each stage on its own thread. Idempotent: later calls return the first call's
     * outcome without closing anything twice.
     *
     * @return true if every frame inside was answered and both stages closed within the bound;
     *     false if a stage was still busy: its close is then queued behind the busy frame (never
     *     run concurrently with it, which a GPU context would not survive) and happens later.
     */
    public boolean close(long waitMs) {
        synchronized (admission) {
            if (closed) return closedCleanly == null || closedCleanly;
            closed = true;
        }
        boolean clean;
        try {
            clean = drainAndClose(waitMs);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            clean = false;
        }
        synchronized (admission) {
            closedCleanly = clean;
        }
        return clean;
    }

    private boolean drainAndClose(long waitMs) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(waitMs);
        boolean drained = slots.tryAcquire(maxInFlight, waitMs, TimeUnit.MILLISECONDS);
        CompletableFuture<Void> stagesClosed = new CompletableFuture<>();
        // Both executors are FIFO. The lightweight stage closes after the previews queued before it;
        // only then is the specialist's close queued, i.e. behind every answer those previews
        // forwarded, so no frame ever reaches a closed stage or a shut-down executor.
        lightExecutor.execute(() -> {
            closeQuietly(light);
            specialistExecutor.execute(() -> {
                closeQuietly(specialist);
                stagesClosed.complete(null);
            });
            lightExecutor.shutdown();
            specialistExecutor.shutdown();
        });
        return waitUntil(stagesClosed, deadline) && drained;
    }

    private static boolean waitUntil(Future<?> f, long deadlineNanos) throws InterruptedException {
        try {
            f.get(Math.max(0, deadlineNanos - System.nanoTime()), TimeUnit.NANOSECONDS);
            return true;
        } catch (ExecutionException e) {
            return true; // closeQuietly swallows; nothing is left running
        } catch (java.util.concurrent.TimeoutException e) {
            return false; // still queued behind a busy frame: it will run when that frame ends
        }
    }

    private static void closeQuietly(Future<? extends AutoCloseable> f) {
        try {
            f.get().close(); // waits for a creation still in progress, so a stage made late is closed too
        } catch (Exception ignored) {
            // Creation failed (nothing to close) or close failed: nothing more to do here.
        }
    }

    private static double since(long t) {
        return (System.nanoTime() - t) / 1e6;
    }

    private static <T> T unwrap(Future<T> f) throws Exception {
        try {
            return f.get();
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            if (c instanceof Exception) throw (Exception) c;
            throw e;
        }
    }

    private String processor(Future<?> f) {
        if (!f.isDone()) return "starting";
        try {
            Object stage = f.get();
            if (stage instanceof Stages.Lightweight) return ((Stages.Lightweight<?>) stage).processor();
            return ((Stages.Specialist<?>) stage).processor();
        } catch (Exception e) {
            Throwable c = e.getCause() != null ? e.getCause() : e;
            return "failed: " + c.getMessage();
        }
    }
}
