package dev.basisnet.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Settings changes while frames flow, and teardown off the caller's thread. */
@Timeout(60)
class PipelineControllerTest {
    static final class Recorder implements PipelineController.Events<String> {
        final List<String> running = Collections.synchronizedList(new ArrayList<>());
        final List<String> failed = Collections.synchronizedList(new ArrayList<>());
        final List<FrameResult> results = Collections.synchronizedList(new ArrayList<>());
        final List<String> resultSettings = Collections.synchronizedList(new ArrayList<>());
        volatile String active;

        @Override
        public void onStarting(String settings) {
            active = null;
        }

        @Override
        public void onRunning(String settings, String light, String specialist) {
            active = settings;
            running.add(settings + " " + light + "/" + specialist);
        }

        @Override
        public void onFailed(String settings, Exception error) {
            failed.add(settings + ": " + error.getMessage());
        }

        @Override
        public void onResult(FrameResult result, PipelineStats.Snapshot stats) {
            results.add(result);
        }
    }

    /** A pipeline whose specialist answers with the settings' number, so a stale result is visible. */
    static final class Factory implements PipelineController.Factory<String, Integer> {
        final AtomicInteger created = new AtomicInteger();
        final List<String> closeThreads = Collections.synchronizedList(new ArrayList<>());
        volatile long closeSleepMs;
        volatile long specialistSleepMs = 1;

        @Override
        public TwoStagePipeline<Integer> create(String settings, TwoStagePipeline.Listener listener,
                                                java.util.function.Consumer<? super Integer> release) {
            if (settings.startsWith("broken")) throw new IllegalStateException("GPU rejected the model");
            created.incrementAndGet();
            int answer = Integer.parseInt(settings.substring(1));
            return new TwoStagePipeline<>(
                    () -> new Stages.Lightweight<Integer>() {
                        @Override
                        public Stages.Preview run(Integer f) {
                            return new Stages.Preview(new float[4], new float[][] {{1f}});
                        }

                        @Override
                        public String processor() {
                            return "cpu";
                        }

                        @Override
                        public void close() {
                        }
                    },
                    () -> new Stages.Specialist<Integer>() {
                        @Override
                        public float[] run(Integer f, float[][] c) throws Exception {
                            Thread.sleep(specialistSleepMs);
                            float[] logits = new float[4];
                            logits[answer] = 9f;
                            return logits;
                        }

                        @Override
                        public String processor() {
                            return "gpu";
                        }

                        @Override
                        public void close() {
                            try {
                                Thread.sleep(closeSleepMs);
                            } catch (InterruptedException e) {
                                Thread.currentThread().interrupt();
                            }
                            closeThreads.add(Thread.currentThread().getName());
                        }
                    },
                    null, TwoStagePipeline.Mode.PIPELINED, 2, listener, release);
        }
    }

    static PipelineController<String, Integer> controller(Factory f, Recorder r, List<Integer> released) {
        return new PipelineController<>(f, r, released::add, 10, 2000);
    }

    @Test
    void settingsChangesWhileFramesFlowNeverThrowAndLoseNoFrame() throws Exception {
        Factory f = new Factory();
        Recorder r = new Recorder();
        List<Integer> released = Collections.synchronizedList(new ArrayList<>());
        PipelineController<String, Integer> c = controller(f, r, released);
        c.apply("s1").get();
        List<Throwable> errors = Collections.synchronizedList(new ArrayList<>());
        AtomicInteger offered = new AtomicInteger();
        Thread camera = new Thread(() -> {
            for (int i = 0; i < 3000; i++) {
                try {
                    c.offer(i);
                    offered.incrementAndGet();
                    if (i % 50 == 0) Thread.sleep(1);
                } catch (Throwable e) {
                    errors.add(e);
                }
            }
        });
        camera.start();
        for (int i = 0; i < 10; i++) c.apply("s" + (1 + i % 3)).get();
        camera.join();
        c.closeAsync().get(10, TimeUnit.SECONDS);
        assertTrue(errors.isEmpty(), "offer threw on the camera thread: " + errors);
        // Every frame comes back to the pool exactly once: answered, refused, or offered while rebuilding.
        assertEquals(offered.get(), released.size());
        assertEquals(offered.get(), released.stream().distinct().count());
    }

    @Test
    void resultsOfTheOldSettingsAreNotReportedAfterAChange() throws Exception {
        Factory f = new Factory();
        f.specialistSleepMs = 30;
        Recorder r = new Recorder();
        PipelineController<String, Integer> c = controller(f, r, new ArrayList<>());
        c.apply("s1").get();
        c.offer(1);
        c.offer(2);
        c.apply("s2").get(); // s1 drains its two frames while being replaced
        r.results.clear();
        for (int i = 0; i < 5; i++) {
            c.offer(10 + i);
            Thread.sleep(40);
        }
        c.closeAsync().get();
        assertFalse(r.results.isEmpty());
        for (FrameResult res : r.results) assertEquals(2, res.label, "a result computed under old settings");
    }

    @Test
    void latestRequestWinsAndSupersededOnesAreSkipped() throws Exception {
        Factory f = new Factory();
        f.closeSleepMs = 200; // each rebuild is slow, so requests pile up
        Recorder r = new Recorder();
        PipelineController<String, Integer> c = controller(f, r, new ArrayList<>());
        c.apply("s1");
        c.apply("s2");
        c.apply("s3").get();
        assertEquals("s3", r.active);
        assertTrue(f.created.get() <= 2, "built " + f.created.get() + " pipelines for 3 quick requests");
        c.closeAsync().get();
    }

    @Test
    void aFailedStartIsReportedAndFramesAreStillReleased() throws Exception {
        Factory f = new Factory();
        Recorder r = new Recorder();
        List<Integer> released = Collections.synchronizedList(new ArrayList<>());
        PipelineController<String, Integer> c = controller(f, r, released);
        c.apply("broken").get();
        assertEquals(List.of("broken: GPU rejected the model"), r.failed);
        assertFalse(c.offer(7));
        assertEquals(List.of(7), released);
        c.apply("s1").get(); // the user picks another setting: the app is usable again
        assertEquals("s1", r.active);
        c.closeAsync().get();
    }

    @Test
    void teardownRunsOffTheCallersThreadAndIsIdempotent() throws Exception {
        Factory f = new Factory();
        f.closeSleepMs = 500; // a GPU model can take a while to release
        Recorder r = new Recorder();
        List<Integer> released = Collections.synchronizedList(new ArrayList<>());
        PipelineController<String, Integer> c = controller(f, r, released);
        c.apply("s1").get();
        long t = System.nanoTime();
        java.util.concurrent.Future<?> done = c.closeAsync();
        long ms = (System.nanoTime() - t) / 1_000_000;
        assertTrue(ms < 100, "closeAsync blocked its caller (the main thread) for " + ms + " ms");
        assertSame(done, c.closeAsync());
        done.get(10, TimeUnit.SECONDS);
        assertEquals(List.of("basisnet-specialist"), f.closeThreads, "closed once, on the stage's own thread");
        assertFalse(c.offer(1), "offer after close is a no-op");
        assertEquals(List.of(1), released);
        c.apply("s2").get(); // no-op: no pipeline is built after close
        assertEquals(1, f.created.get());
        assertNotEquals("s2", r.active);
    }
}
