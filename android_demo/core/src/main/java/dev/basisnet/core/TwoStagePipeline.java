package dev.basisnet.core;

import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

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
    private final AtomicLong nextIndex = new AtomicLong();
    private final AtomicLong rejected = new AtomicLong();
    private final AtomicLong listenerErrors = new AtomicLong();
    private volatile Float threshold;
    private volatile boolean closed;

    public TwoStagePipeline(Stages.Factory<? extends Stages.Lightweight<F>> lightFactory,
                            Stages.Factory<? extends Stages.Specialist<F>> specialistFactory,
                            Float threshold, Mode mode, int maxInFlight, Listener listener) {
        if (maxInFlight < 1) throw new IllegalArgumentException("maxInFlight must be >= 1");
        this.mode = mode;
        this.threshold = threshold;
        this.listener = listener;
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

    /** Accepts the frame unless {@code maxInFlight} frames are already inside. */
    public boolean offer(F frame) {
        ensureOpen();
        if (!slots.tryAcquire()) {
            rejected.incrementAndGet();
            return false;
        }
        enqueue(frame);
        return true;
    }

    /** Accepts the frame, waiting for room. */
    public void submit(F frame) throws InterruptedException {
        ensureOpen();
        slots.acquire();
        enqueue(frame);
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
            slots.release();
        }
    }

    /** Stops accepting frames, finishes the ones inside, closes each stage on its own thread. */
    @Override
    public void close() {
        if (closed) return;
        closed = true;
        try {
            drainAndClose();
        } catch (InterruptedException e) {
            lightExecutor.shutdownNow();
            specialistExecutor.shutdownNow();
            Thread.currentThread().interrupt();
        }
    }

    private void drainAndClose() throws InterruptedException {
        Future<?> closeLight = lightExecutor.submit(() -> closeQuietly(light));
        waitQuietly(closeLight);
        Future<?> closeSpecialist = specialistExecutor.submit(() -> closeQuietly(specialist));
        waitQuietly(closeSpecialist);
        lightExecutor.shutdown();
        specialistExecutor.shutdown();
        lightExecutor.awaitTermination(10, TimeUnit.SECONDS);
        specialistExecutor.awaitTermination(10, TimeUnit.SECONDS);
    }

    private static void waitQuietly(Future<?> f) throws InterruptedException {
        try {
            f.get(10, TimeUnit.SECONDS);
        } catch (ExecutionException | java.util.concurrent.TimeoutException ignored) {
            // A stage that fails to close must not block shutdown.
        }
    }

    private static void closeQuietly(Future<? extends AutoCloseable> f) {
        try {
            if (f.isDone() && !f.isCancelled()) f.get().close();
        } catch (Exception ignored) {
            // Creation failed (nothing to close) or close failed: nothing more to do here.
        }
    }

    private void ensureOpen() {
        if (closed) throw new IllegalStateException("pipeline is closed");
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
