package dev.basisnet.core;

/**
 * One upright camera frame as packed ARGB pixels, row-major, {@code width} pixels a row. The
 * array may be larger than {@code width * height}: frames are recycled through a
 * {@link FramePool}, and a buffer sized for a larger frame is reused for a smaller one.
 */
public final class PixelFrame {
    int[] argb;
    int width;
    int height;

    PixelFrame(int capacity) {
        this.argb = new int[capacity];
    }

    public int[] argb() {
        return argb;
    }

    public int width() {
        return width;
    }

    public int height() {
        return height;
    }

    public int capacity() {
        return argb.length;
    }

    void resize(int width, int height) {
        if (width < 1 || height < 1 || (long) width * height > argb.length) {
            throw new IllegalArgumentException(width + "x" + height + " does not fit " + argb.length + " pixels");
        }
        this.width = width;
        this.height = height;
    }
}
