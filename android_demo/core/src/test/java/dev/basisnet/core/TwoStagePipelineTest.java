package dev.basisnet.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(30)
class TwoStagePipelineTest {
    /** Frame i's lightweight logits put the answer on class i % 3 with confidence set by i. */
    static final class FakeLight implements Stages.Lightweight<Integer> {
        final Set threads;
        final long sleepMs;

        FakeLight(Set threads, long sleepMs) {
            this.threads = threads;
            this.sleepMs = sleepMs;
            threads.created.put("light", Thread.currentThread().getName());
        }

        @Override
        public Stages.Preview run(Integer frame) throws Exception {
            threads.ran.put("light:" + Thread.currentThread().getName(), true);
            Thread.sleep(sleepMs);
            float[] logits = new float[3];
            logits[frame % 3] = frame % 2 == 0 ? 10f : 0.1f; // even frames are confident
            return new Stages.Preview(logits, new float[][] {{frame, 1}});
        }

        @Override
        public String processor() {
            return "fake CPU";
        }

        @Override
        public void close() {
            threads.closed.put("light", Thread.currentThread().getName());
        }
    }

    static final class FakeSpecialist implements Stages.Specialist<Integer> {
        final Set threads;
        final long sleepMs;

        FakeSpecialist(Set threads, long sleepMs) {
            this.threads = threads;
            this.sleepMs = sleepMs;
            threads.created.put("specialist", Thread.currentThread().getName());
        }

        @Override
        public float[] run(Integer frame, float[][] coefficients) throws Exception {
            threads.ran.put("specialist:" + Thread.currentThread().getName(), true);
            assertEquals((float) frame, coefficients[0][0]); // the coefficients of this very frame
            if (frame == 13) throw new IllegalStateException("simulated GPU failure on frame 13");
            Thread.sleep(sleepMs);
            float[] logits = new float[3];
            logits[(frame + 1) % 3] = 5f; // distinguishable from the lightweight answer
            return logits;
        }

        @Override
        public String processor() {
            return "fake GPU";
        }

        @Override
        public void close() {
            threads.closed.put("specialist", Thread.currentThread().getName());
        }
    }

    static final class Set {
        final ConcurrentHashMap<String, String> created = new ConcurrentHashMap<>();
        final ConcurrentHashMap<String, String> closed = new ConcurrentHashMap<>();
        final ConcurrentHashMap<String, Boolean> ran = new ConcurrentHashMap<>();
    }

    @Test
    void keepsOrderAndDropsNothingUnderASlowSpecialist() throws Exception {
        Set threads = new Set();
        List<FrameResult> results = Collections.synchronizedList(new ArrayList<>());
        AtomicInteger maxInside = new AtomicInteger();
        AtomicInteger inside = new AtomicInteger();
        int frames = 60;
        CountDownLatch done = new CountDownLatch(frames);
        TwoStagePipeline<Integer> pipeline = new TwoStagePipeline<>(
                () -> new FakeLight(threads, 1), () -> new FakeSpecialist(threads, 8),
                0.9f, TwoStagePipeline.Mode.PIPELINED, 3, r -> {
                    inside.decrementAndGet();
                    results.add(r);
                    done.countDown();
                });
        pipeline.awaitReady();
        for (int i = 0; i < frames; i++) {
            pipeline.submit(i); // blocks when 3 frames are inside: backpressure, not loss
            maxInside.accumulateAndGet(inside.incrementAndGet(), Math::max);
        }
        assertTrue(done.await(20, TimeUnit.SECONDS));
        pipeline.close();

        assertEquals(frames, results.size());
        for (int i = 0; i < frames; i++) {
            FrameResult r = results.get(i);
            assertEquals(i, r.index, "results arrive in submission order");
            if (i == 13) {
                assertNotNull(r.error, "a failing frame still gets its (error) result, in order");
                continue;
            }
            assertNull(r.error);
            if (i % 2 == 0) {
                assertEquals("lightweight", r.stage);
                assertEquals(i % 3, r.label);
            } else {
                assertEquals("specialist", r.stage);
                assertEquals((i + 1) % 3, r.label);
                assertTrue(r.specialistMs >= 7, "the specialist really ran: " + r.specialistMs);
            }
        }
        assertTrue(maxInside.get() <= 4, "backpressure bounds the frames inside: " + maxInside.get());
        assertEquals("basisnet-lightweight", threads.created.get("light"));
        assertEquals("basisnet-specialist", threads.created.get("specialist"));
        assertEquals("basisnet-lightweight", threads.closed.get("light"));
        assertEquals("basisnet-specialist", threads.closed.get("specialist"));
        assertEquals(java.util.Set.of("light:basisnet-lightweight", "specialist:basisnet-specialist"),
                threads.ran.keySet(), "each stage runs only on its own thread");
    }

    @Test
    void pipelinedPreviewsFramePlusOneWhileTheSpecialistRunsFrameT() throws Exception {
        // Structural, not a speed test: record when each stage ran each frame.
        long[][] pipelined = intervals(TwoStagePipeline.Mode.PIPELINED);
        long[][] sequential = intervals(TwoStagePipeline.Mode.SEQUENTIAL);
        int overlaps = 0;
        for (int t = 0; t + 1 < pipelined.length; t++) {
            if (intersect(pipelined[t + 1][0], pipelined[t + 1][1], pipelined[t][2], pipelined[t][3])) overlaps++;
        }
        assertTrue(overlaps >= pipelined.length / 2, "frame t+1 previewed during specialist(t) in " + overlaps + " frames");
        for (int t = 0; t + 1 < sequential.length; t++) {
            assertFalse(intersect(sequential[t + 1][0], sequential[t + 1][1], sequential[t][2], sequential[t][3]),
                    "sequential mode never overlaps");
        }
    }

    private static boolean intersect(long a0, long a1, long b0, long b1) {
        return a0 < b1 && b0 < a1;
    }

    /** Per frame: {light start, light end, specialist start, specialist end} in ns. */
    private long[][] intervals(TwoStagePipeline.Mode mode) throws Exception {
        int frames = 12;
        long[][] at = new long[frames][4];
        Stages.Factory<Stages.Lightweight<Integer>> light = () -> new Stages.Lightweight<Integer>() {
            @Override
            public Stages.Preview run(Integer frame) throws Exception {
                at[frame][0] = System.nanoTime();
                Thread.sleep(10);
                at[frame][1] = System.nanoTime();
                return new Stages.Preview(new float[] {0, 0, 0}, new float[][] {{frame, 1}});
            }

            @Override
            public String processor() {
                return "cpu";
            }

            @Override
            public void close() {
            }
        };
        Stages.Factory<Stages.Specialist<Integer>> specialist = () -> new Stages.Specialist<Integer>() {
            @Override
            public float[] run(Integer frame, float[][] c) throws Exception {
                at[frame][2] = System.nanoTime();
                Thread.sleep(10);
                at[frame][3] = System.nanoTime();
                return new float[] {1, 0, 0};
            }

            @Override
            public String processor() {
                return "gpu";
            }

            @Override
            public void close() {
            }
        };
        CountDownLatch done = new CountDownLatch(frames);
        TwoStagePipeline<Integer> p = new TwoStagePipeline<>(light, specialist, null, mode, 2, r -> done.countDown());
        for (int i = 0; i < frames; i++) p.submit(i);
        assertTrue(done.await(20, TimeUnit.SECONDS));
        p.close();
        return at;
    }

    @Test
    void offerRefusesWhenFullAndCountsIt() throws Exception {
        Set threads = new Set();
        CountDownLatch release = new CountDownLatch(1);
        List<FrameResult> results = Collections.synchronizedList(new ArrayList<>());
        TwoStagePipeline<Integer> p = new TwoStagePipeline<>(
                () -> new FakeLight(threads, 0),
                () -> new Stages.Specialist<Integer>() {
                    @Override
                    public float[] run(Integer frame, float[][] c) throws Exception {
                        release.await();
                        return new float[] {1, 0, 0};
                    }

                    @Override
                    public String processor() {
                        return "blocked";
                    }

                    @Override
                    public void close() {
                    }
                },
                null, TwoStagePipeline.Mode.PIPELINED, 2, results::add);
        p.awaitReady();
        assertTrue(p.offer(1));
        assertTrue(p.offer(3));
        assertFalse(p.offer(5), "a third frame is refused while two are inside");
        assertEquals(1, p.rejected());
        release.countDown();
        p.close(); // drains the two accepted frames
        assertEquals(2, results.size());
        assertEquals(0, results.get(0).index);
        assertEquals(1, results.get(1).index);
    }

    @Test
    void aStageThatCannotBeCreatedReportsItself() {
        Set threads = new Set();
        TwoStagePipeline<Integer> p = new TwoStagePipeline<>(
                () -> new FakeLight(threads, 0),
                () -> {
                    throw new UnsupportedOperationException("GPU accelerator not available");
                },
                null, TwoStagePipeline.Mode.PIPELINED, 2, r -> { });
        Exception e = org.junit.jupiter.api.Assertions.assertThrows(UnsupportedOperationException.class, p::awaitReady);
        assertEquals("GPU accelerator not available", e.getMessage());
        assertTrue(p.specialistProcessor().startsWith("failed: GPU accelerator not available"));
        assertEquals("fake CPU", p.lightweightProcessor());
        p.close();
    }

    @Test
    void thresholdIsAdjustableWhileRunning() throws Exception {
        Set threads = new Set();
        List<FrameResult> results = Collections.synchronizedList(new ArrayList<>());
        TwoStagePipeline<Integer> p = new TwoStagePipeline<>(
                () -> new FakeLight(threads, 0), () -> new FakeSpecialist(threads, 0),
                null, TwoStagePipeline.Mode.SEQUENTIAL, 1, results::add);
        p.submit(0);
        while (results.isEmpty()) Thread.sleep(1); // the threshold is read when the frame is answered
        p.setThreshold(0.5f);
        p.submit(2);
        p.close();
        assertEquals("specialist", results.get(0).stage);
        assertEquals("lightweight", results.get(1).stage);
    }

    @Test
    void aThrowingListenerDoesNotKillTheSpecialistThread() throws Exception {
        Set threads = new Set();
        AtomicInteger calls = new AtomicInteger();
        TwoStagePipeline<Integer> p = new TwoStagePipeline<>(
                () -> new FakeLight(threads, 0), () -> new FakeSpecialist(threads, 0),
                null, TwoStagePipeline.Mode.PIPELINED, 2, r -> {
                    calls.incrementAndGet();
                    throw new RuntimeException("listener bug");
                });
        for (int i = 0; i < 5; i++) p.submit(2 * i + 1);
        p.close();
        assertEquals(5, calls.get());
        assertEquals(5, p.listenerErrors());
        assertEquals(java.util.Set.of("light:basisnet-lightweight", "specialist:basisnet-specialist"),
                threads.ran.keySet());
    }
}
