package dev.basisnet.core;

import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Recycles full-frame pixel buffers so the camera path allocates none in the steady state: the
 * analyzer takes a frame, the pipeline gives it back once the frame's result is delivered (its
 * {@code release} callback), and a refused frame is given back at once.
 *
 * <p>Counts every allocation, so a test (and the overlay) can prove the steady state is
 * allocation-free. Thread-safe.
 */
public final class FramePool {
    private final ConcurrentLinkedQueue<PixelFrame> free = new ConcurrentLinkedQueue<>();
    private final int maxFree;
    private final AtomicLong allocations = new AtomicLong();

    /** @param maxFree buffers kept for reuse; more are left to the garbage collector. */
    public FramePool(int maxFree) {
        if (maxFree < 1) throw new IllegalArgumentException("maxFree must be >= 1");
        this.maxFree = maxFree;
    }

    /** A frame of {@code width x height}, reused when a free buffer is large enough. */
    public PixelFrame acquire(int width, int height) {
        int needed = Math.multiplyExact(width, height);
        PixelFrame frame = free.poll();
        if (frame == null || frame.capacity() < needed) {
            // A too-small buffer (the camera resolution grew) is dropped, not kept: it would never fit again.
            allocations.incrementAndGet();
            frame = new PixelFrame(needed);
        }
        frame.resize(width, height);
        return frame;
    }

    /** Gives a frame back; null is ignored, so a release path need not check. */
    public void release(PixelFrame frame) {
        if (frame == null) return;
        if (free.size() < maxFree) free.offer(frame);
    }

    /** Buffers allocated since the pool was made. */
    public long allocations() {
        return allocations.get();
    }
}
