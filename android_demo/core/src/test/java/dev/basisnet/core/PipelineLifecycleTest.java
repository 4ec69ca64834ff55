package dev.basisnet.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Lifecycle rules of TwoStagePipeline: what a settings change or teardown does to frames in flight. */
@Timeout(30)
class PipelineLifecycleTest {
    /** Counts closes and records whether a run overlapped a close (a GPU context would not survive it). */
    static final class Probe {
        final AtomicInteger lightCloses = new AtomicInteger();
        final AtomicInteger specialistCloses = new AtomicInteger();
        final AtomicInteger specialistRuns = new AtomicInteger();
        final AtomicBoolean running = new AtomicBoolean();
        final AtomicBoolean closedWhileRunning = new AtomicBoolean();
        final AtomicBoolean ranAfterClose = new AtomicBoolean();
    }

    static Stages.Factory<Stages.Lightweight<Integer>> light(Probe probe) {
        return () -> new Stages.Lightweight<Integer>() {
            @Override
            public Stages.Preview run(Integer frame) {
                return new Stages.Preview(new float[] {0f, 0f}, new float[][] {{1f}}); // never confident: specialist runs
            }

            @Override
            public String processor() {
                return "cpu";
            }

            @Override
            public void close() {
                probe.lightCloses.incrementAndGet();
            }
        };
    }

    static Stages.Factory<Stages.Specialist<Integer>> specialist(Probe probe, long sleepMs) {
        return () -> new Stages.Specialist<Integer>() {
            boolean closed;

            @Override
            public float[] run(Integer frame, float[][] c) throws Exception {
                if (closed) probe.ranAfterClose.set(true);
                probe.running.set(true);
                Thread.sleep(sleepMs);
                probe.running.set(false);
                probe.specialistRuns.incrementAndGet();
                return new float[] {1f, 0f};
            }

            @Override
            public String processor() {
                return "gpu";
            }

            @Override
            public void close() {
                if (probe.running.get()) probe.closedWhileRunning.set(true);
                closed = true;
                probe.specialistCloses.incrementAndGet();
            }
        };
    }

    static TwoStagePipeline<Integer> pipeline(Probe probe, long sleepMs, List<FrameResult> results,
                                              List<Integer> released) {
        return new TwoStagePipeline<>(light(probe), specialist(probe, sleepMs), null,
                TwoStagePipeline.Mode.PIPELINED, 2, results::add, released::add);
    }

    @Test
    void offerAndSubmitAfterCloseAreNoOps() throws Exception {
        Probe probe = new Probe();
        List<FrameResult> results = Collections.synchronizedList(new ArrayList<>());
        TwoStagePipeline<Integer> p = pipeline(probe, 0, results, new ArrayList<>());
        p.awaitReady();
        p.close();
        assertFalse(p.offer(1)); // must not throw: a camera frame can race a settings change
        assertFalse(p.submit(2));
        assertEquals(0, probe.specialistRuns.get());
        assertTrue(results.isEmpty());
        assertEquals(0, p.rejected(), "a closed pipeline's refusals are not 'full' refusals");
    }

    @Test
    void closeIsIdempotentAndClosesEachStageOnce() throws Exception {
        Probe probe = new Probe();
        TwoStagePipeline<Integer> p = pipeline(probe, 0, new ArrayList<>(), new ArrayList<>());
        p.awaitReady();
        Thread other = new Thread(p::close);
        other.start();
        p.close();
        other.join();
        p.close();
        assertEquals(1, probe.lightCloses.get());
        assertEquals(1, probe.specialistCloses.get());
    }

    @Test
    void closeWaitsForTheFramesInsideAndAnswersThemAll() throws Exception {
        Probe probe = new Probe();
        List<FrameResult> results = Collections.synchronizedList(new ArrayList<>());
        List<Integer> released = Collections.synchronizedList(new ArrayList<>());
        TwoStagePipeline<Integer> p = pipeline(probe, 100, results, released);
        p.awaitReady();
        assertTrue(p.offer(1));
        assertTrue(p.offer(2));
        assertTrue(p.close(5000));
        assertEquals(2, results.size(), "an accepted frame always gets its result, even across close");
        assertEquals(List.of(1, 2), released);
        assertFalse(probe.closedWhileRunning.get());
        assertFalse(probe.ranAfterClose.get());
    }

    @Test
    void closeIsBoundedWhenAStageHangsAndNeverClosesUnderARunningFrame() throws Exception {
        Probe probe = new Probe();
        List<FrameResult> results = Collections.synchronizedList(new ArrayList<>());
        TwoStagePipeline<Integer> p = pipeline(probe, 1500, results, new ArrayList<>());
        p.awaitReady();
        assertTrue(p.offer(1));
        Thread.sleep(100); // frame 1 is now inside the specialist
        long t = System.nanoTime();
        assertFalse(p.close(200), "a stage still busy must be reported");
        long ms = (System.nanoTime() - t) / 1_000_000;
        assertTrue(ms < 1000, "close waited " + ms + " ms, beyond its bound");
        assertFalse(p.close(200), "a second close reports the first one's outcome");
        // The specialist's close is queued behind the busy frame: it happens, but after it.
        long deadline = System.currentTimeMillis() + 5000;
        while (probe.specialistCloses.get() == 0 && System.currentTimeMillis() < deadline) Thread.sleep(20);
        assertEquals(1, probe.specialistCloses.get());
        assertFalse(probe.closedWhileRunning.get());
        assertEquals(1, results.size());
    }

    @Test
    void offersRacingCloseNeverThrowAndEveryAcceptedFrameIsReleasedOnce() throws Exception {
        for (int round = 0; round < 20; round++) {
            Probe probe = new Probe();
            List<FrameResult> results = Collections.synchronizedList(new ArrayList<>());
            List<Integer> released = Collections.synchronizedList(new ArrayList<>());
            TwoStagePipeline<Integer> p = pipeline(probe, 1, results, released);
            p.awaitReady();
            AtomicInteger accepted = new AtomicInteger();
            List<Throwable> errors = Collections.synchronizedList(new ArrayList<>());
            CountDownLatch started = new CountDownLatch(1);
            Thread camera = new Thread(() -> {
                started.countDown();
                for (int i = 0; i < 2000; i++) {
                    try {
                        if (p.offer(i)) accepted.incrementAndGet();
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                }
            });
            camera.start();
            started.await();
            p.close(5000);
            camera.join();
            assertTrue(errors.isEmpty(), "offer threw: " + errors);
            assertEquals(accepted.get(), results.size());
            assertEquals(accepted.get(), released.size());
            assertEquals(accepted.get(), released.stream().distinct().count());
        }
    }

    @Test
    void theSteadyStateAllocatesNoFrameBuffers() throws Exception {
        FramePool pool = new FramePool(4);
        List<FrameResult> results = Collections.synchronizedList(new ArrayList<>());
        TwoStagePipeline<PixelFrame> p = new TwoStagePipeline<PixelFrame>(
                () -> new Stages.Lightweight<PixelFrame>() {
                    @Override
                    public Stages.Preview run(PixelFrame f) {
                        return new Stages.Preview(new float[] {f.argb()[0], 0f}, new float[][] {{1f}});
                    }

                    @Override
                    public String processor() {
                        return "cpu";
                    }

                    @Override
                    public void close() {
                    }
                },
                () -> new Stages.Specialist<PixelFrame>() {
                    @Override
                    public float[] run(PixelFrame f, float[][] c) {
                        return new float[] {1f, 0f};
                    }

                    @Override
                    public String processor() {
                        return "gpu";
                    }

                    @Override
                    public void close() {
                    }
                },
                null, TwoStagePipeline.Mode.PIPELINED, 2, results::add, pool::release);
        p.awaitReady();
        java.nio.ByteBuffer plane = java.nio.ByteBuffer.allocateDirect(64 * 48 * 4);
        int offered = 0;
        for (int i = 0; i < 500; i++) {
            PixelFrame f = RgbaFrames.upright(plane, 64, 48, 64 * 4, 90, pool);
            if (p.offer(f)) offered++;
            else pool.release(f); // what the controller does with a refused frame
            if (i % 10 == 0) Thread.sleep(1);
        }
        p.close();
        assertEquals(offered, results.size());
        // One buffer per frame that can be inside (2) plus the one being filled by the camera.
        assertTrue(pool.allocations() <= 3, pool.allocations() + " frame buffers allocated for 500 frames");
    }
}
