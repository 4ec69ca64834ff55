package dev.basisnet.core;

import java.nio.ByteBuffer;

/**
 * CameraX RGBA_8888 analysis output (one plane: R, G, B, A bytes per pixel, rows
 * {@code rowStride} bytes apart) to an upright {@link PixelFrame}, rotating by the frame's
 * {@code rotationDegrees} while copying. One pass, into a pooled buffer: it replaces
 * {@code toBitmap()}, a rotated {@code Bitmap} and {@code getPixels}, three full-frame
 * allocations per frame.
 */
public final class RgbaFrames {
    private static final int BYTES_PER_PIXEL = 4;

    private RgbaFrames() {
    }

    /**
     * Copies the plane into a frame from {@code pool}, rotated clockwise by {@code rotationDegrees}
     * (0, 90, 180 or 270), as {@code ImageInfo.getRotationDegrees()} asks.
     */
    public static PixelFrame upright(ByteBuffer rgba, int width, int height, int rowStride, int rotationDegrees,
                                     FramePool pool) {
        checkPlane(rgba, width, height, rowStride);
        boolean quarter = rotationDegrees == 90 || rotationDegrees == 270;
        PixelFrame out = pool.acquire(quarter ? height : width, quarter ? width : height);
        try {
            copyRotated(rgba, width, height, rowStride, rotationDegrees, out);
        } catch (RuntimeException e) {
            pool.release(out);
            throw e;
        }
        return out;
    }

    private static void copyRotated(ByteBuffer rgba, int width, int height, int rowStride, int degrees,
                                    PixelFrame out) {
        int[] dst = out.argb;
        int base = rgba.position();
        for (int y = 0; y < height; y++) {
            int row = base + y * rowStride;
            for (int x = 0; x < width; x++) {
                int i = row + x * BYTES_PER_PIXEL;
                int argb = ((rgba.get(i + 3) & 0xFF) << 24) | ((rgba.get(i) & 0xFF) << 16)
                        | ((rgba.get(i + 1) & 0xFF) << 8) | (rgba.get(i + 2) & 0xFF);
                dst[target(x, y, width, height, degrees)] = argb;
            }
        }
    }

    /** Index in the upright frame of source pixel (x, y), for a clockwise rotation. */
    static int target(int x, int y, int width, int height, int degrees) {
        switch (degrees) {
            case 0: return y * width + x;
            case 90: return x * height + (height - 1 - y);
            case 180: return (height - 1 - y) * width + (width - 1 - x);
            case 270: return (width - 1 - x) * height + y;
            default: throw new IllegalArgumentException("rotation must be 0, 90, 180 or 270, not " + degrees);
        }
    }

    private static void checkPlane(ByteBuffer rgba, int width, int height, int rowStride) {
        if (width < 1 || height < 1) throw new IllegalArgumentException("empty frame " + width + "x" + height);
        if (rowStride < width * BYTES_PER_PIXEL) {
            throw new IllegalArgumentException("rowStride " + rowStride + " < width * 4 = " + width * BYTES_PER_PIXEL);
        }
        long needed = (long) (height - 1) * rowStride + (long) width * BYTES_PER_PIXEL;
        if (rgba.remaining() < needed) {
            throw new IllegalArgumentException("plane has " + rgba.remaining() + " bytes, a " + width + "x" + height
                    + " RGBA frame with rowStride " + rowStride + " needs " + needed);
        }
    }
}
