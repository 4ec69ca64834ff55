package dev.basisnet.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.ByteBuffer;
import java.util.Arrays;

import org.junit.jupiter.api.Test;

/** Camera plane to upright ARGB, and buffer reuse. */
class FramesTest {
    /** A 3x2 RGBA plane with a padded row stride; pixel (x, y) has R = 10*y + x, G = 100, B = 200, A = 255. */
    static ByteBuffer plane(int rowStride) {
        ByteBuffer b = ByteBuffer.allocate(rowStride * 2);
        for (int y = 0; y < 2; y++) {
            for (int x = 0; x < 3; x++) {
                int i = y * rowStride + x * 4;
                b.put(i, (byte) (10 * y + x)).put(i + 1, (byte) 100).put(i + 2, (byte) 200).put(i + 3, (byte) 255);
            }
        }
        return b;
    }

    static int px(int red) {
        return 0xFF000000 | red << 16 | 100 << 8 | 200;
    }

    static int[] pixels(PixelFrame f) {
        return Arrays.copyOf(f.argb(), f.width() * f.height());
    }

    @Test
    void rotatesClockwiseAsCameraXAsks() {
        FramePool pool = new FramePool(2);
        ByteBuffer p = plane(16); // 3 pixels = 12 bytes, padded to 16
        PixelFrame r0 = RgbaFrames.upright(p, 3, 2, 16, 0, pool);
        assertEquals(3, r0.width());
        assertArrayEquals(new int[] {px(0), px(1), px(2), px(10), px(11), px(12)}, pixels(r0));
        PixelFrame r90 = RgbaFrames.upright(p, 3, 2, 16, 90, new FramePool(1));
        assertEquals(2, r90.width());
        assertEquals(3, r90.height());
        assertArrayEquals(new int[] {px(10), px(0), px(11), px(1), px(12), px(2)}, pixels(r90));
        PixelFrame r180 = RgbaFrames.upright(p, 3, 2, 16, 180, new FramePool(1));
        assertArrayEquals(new int[] {px(12), px(11), px(10), px(2), px(1), px(0)}, pixels(r180));
        PixelFrame r270 = RgbaFrames.upright(p, 3, 2, 16, 270, new FramePool(1));
        assertArrayEquals(new int[] {px(2), px(12), px(1), px(11), px(0), px(10)}, pixels(r270));
    }

    @Test
    void refusesAPlaneTooSmallOrABadRotation() {
        FramePool pool = new FramePool(1);
        assertThrows(IllegalArgumentException.class, () -> RgbaFrames.upright(ByteBuffer.allocate(20), 3, 2, 16, 0, pool));
        assertThrows(IllegalArgumentException.class, () -> RgbaFrames.upright(plane(16), 3, 2, 16, 45, pool));
        assertThrows(IllegalArgumentException.class, () -> RgbaFrames.upright(plane(16), 3, 2, 8, 0, pool));
    }

    @Test
    void poolReusesBuffersAndCountsAllocations() {
        FramePool pool = new FramePool(2);
        PixelFrame a = pool.acquire(4, 4);
        pool.release(a);
        PixelFrame b = pool.acquire(2, 8); // same pixel count: reused, reshaped
        assertSame(a, b);
        assertEquals(2, b.width());
        assertEquals(1, pool.allocations());
        pool.release(b);
        PixelFrame big = pool.acquire(5, 5); // does not fit: a new buffer
        assertEquals(2, pool.allocations());
        pool.release(big);
        pool.release(pool.acquire(1, 1));
        assertEquals(2, pool.allocations());
    }

    @Test
    void thePreprocessorReadsAPooledFrameLargerThanItsImage() {
        // A buffer reused from a larger frame has stale pixels past width*height: they must not leak in.
        Preprocessing pre = new Preprocessing(Preprocessing.Resize.SQUASH, 1.0, 0.0, 1.0,
                Preprocessing.Interpolation.BILINEAR, 2, 2);
        FramePool pool = new FramePool(1);
        PixelFrame big = pool.acquire(8, 8);
        Arrays.fill(big.argb(), 0xFFFFFFFF);
        pool.release(big);
        PixelFrame small = RgbaFrames.upright(plane(12), 3, 2, 12, 0, pool);
        assertSame(big, small);
        float[] pooled = new Preprocessor(pre).tensor(small.argb(), small.width(), small.height(), 2);
        float[] fresh = new Preprocessor(pre).tensor(pixels(small), 3, 2, 2);
        assertArrayEquals(fresh, pooled);
    }
}
