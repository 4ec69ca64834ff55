package dev.basisnet.core;

/**
 * Pillow's {@code Image.resize} for 8-bit RGB, reproduced exactly.
 *
 * <p>The models were trained and calibrated on Pillow's resampling, so the app resizes the same
 * way: a separable convolution whose support widens with the downscale factor (antialiasing),
 * coefficients in 22-bit fixed point, horizontal pass first (src/libImaging/Resample.c); and for
 * NEAREST, the affine scale path (src/libImaging/Geometry.c). The Python test suite checks this
 * class byte for byte against Pillow.
 *
 * <p>Pixels are packed {@code 0xAARRGGBB} ints, as {@code Bitmap.getPixels} returns them; alpha
 * is ignored and returned as 0xFF.
 */
public final class PillowResize {
    private static final int PRECISION_BITS = 32 - 8 - 2;

    private PillowResize() {
    }

    public static int[] resize(int[] argb, int width, int height, int outWidth, int outHeight,
                               Preprocessing.Interpolation filter) {
        if (argb.length < width * height) throw new IllegalArgumentException("pixel array smaller than width*height");
        if (outWidth == width && outHeight == height) return argb.clone();
        if (filter == Preprocessing.Interpolation.NEAREST) return nearest(argb, width, height, outWidth, outHeight);
        double support = filter == Preprocessing.Interpolation.BICUBIC ? 2.0 : 1.0;

        Coefficients vert = precompute(height, 0f, height, outHeight, filter, support);
        int yFirst = vert.bounds[0];
        int yLast = vert.bounds[outHeight * 2 - 2] + vert.bounds[outHeight * 2 - 1];
        int[] src = argb;
        int srcWidth = width;
        int rowOffset = 0;
        boolean needHorizontal = outWidth != width;
        boolean needVertical = outHeight != height;
        if (needHorizontal) {
            Coefficients horiz = precompute(width, 0f, width, outWidth, filter, support);
            for (int i = 0; i < outHeight; i++) vert.bounds[i * 2] -= yFirst;
            src = horizontal(argb, width, yFirst, yLast - yFirst, outWidth, horiz);
            srcWidth = outWidth;
        }
        if (!needVertical) return src;
        return vertical(src, srcWidth, rowOffset, outHeight, vert);
    }

    private static final class Coefficients {
        final int ksize;
        final int[] bounds; // per output: xmin, count
        final int[] k; // fixed point, ksize per output

        Coefficients(int ksize, int[] bounds, int[] k) {
            this.ksize = ksize;
            this.bounds = bounds;
            this.k = k;
        }
    }

    private static double filter(Preprocessing.Interpolation f, double x) {
        if (x < 0.0) x = -x;
        if (f == Preprocessing.Interpolation.BILINEAR) return x < 1.0 ? 1.0 - x : 0.0;
        final double a = -0.5; // bicubic
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
    }

    private static Coefficients precompute(int inSize, float in0, float in1, int outSize,
                                           Preprocessing.Interpolation f, double filterSupport) {
        double scale = (double) (in1 - in0) / outSize;
        double filterscale = scale < 1.0 ? 1.0 : scale;
        double support = filterSupport * filterscale;
        int ksize = (int) Math.ceil(support) * 2 + 1;
        int[] bounds = new int[outSize * 2];
        int[] kk = new int[outSize * ksize];
        double[] k = new double[ksize];
        for (int xx = 0; xx < outSize; xx++) {
            double center = in0 + (xx + 0.5) * scale;
            double ww = 0.0;
            double ss = 1.0 / filterscale;
            int xmin = (int) (center - support + 0.5);
            if (xmin < 0) xmin = 0;
            int xmax = (int) (center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            for (int x = 0; x < xmax; x++) {
                double w = filter(f, (x + xmin - center + 0.5) * ss);
                k[x] = w;
                ww += w;
            }
            for (int x = 0; x < ksize; x++) {
                double v = x < xmax ? (ww != 0.0 ? k[x] / ww : k[x]) : 0.0;
                kk[xx * ksize + x] = v < 0 ? (int) (-0.5 + v * (1 << PRECISION_BITS))
                        : (int) (0.5 + v * (1 << PRECISION_BITS));
            }
            bounds[xx * 2] = xmin;
            bounds[xx * 2 + 1] = xmax;
        }
        return new Coefficients(ksize, bounds, kk);
    }

    private static int clip8(int v) {
        int s = v >> PRECISION_BITS;
        return s < 0 ? 0 : Math.min(s, 255);
    }

    private static int[] horizontal(int[] in, int inWidth, int rowOffset, int rows, int outWidth, Coefficients c) {
        int[] out = new int[outWidth * rows];
        for (int yy = 0; yy < rows; yy++) {
            int row = (yy + rowOffset) * inWidth;
            for (int xx = 0; xx < outWidth; xx++) {
                int xmin = c.bounds[xx * 2], xmax = c.bounds[xx * 2 + 1], base = xx * c.ksize;
                int r = 1 << (PRECISION_BITS - 1), g = r, b = r;
                for (int x = 0; x < xmax; x++) {
                    int p = in[row + x + xmin], w = c.k[base + x];
                    r += ((p >> 16) & 0xFF) * w;
                    g += ((p >> 8) & 0xFF) * w;
                    b += (p & 0xFF) * w;
                }
                out[yy * outWidth + xx] = 0xFF000000 | clip8(r) << 16 | clip8(g) << 8 | clip8(b);
            }
        }
        return out;
    }

    private static int[] vertical(int[] in, int width, int rowOffset, int outHeight, Coefficients c) {
        int[] out = new int[width * outHeight];
        for (int yy = 0; yy < outHeight; yy++) {
            int ymin = c.bounds[yy * 2], ymax = c.bounds[yy * 2 + 1], base = yy * c.ksize;
            for (int xx = 0; xx < width; xx++) {
                int r = 1 << (PRECISION_BITS - 1), g = r, b = r;
                for (int y = 0; y < ymax; y++) {
                    int p = in[(y + ymin + rowOffset) * width + xx], w = c.k[base + y];
                    r += ((p >> 16) & 0xFF) * w;
                    g += ((p >> 8) & 0xFF) * w;
                    b += (p & 0xFF) * w;
                }
                out[yy * width + xx] = 0xFF000000 | clip8(r) << 16 | clip8(g) << 8 | clip8(b);
            }
        }
        return out;
    }

    private static int coord(double v) {
        return v < 0.0 ? -1 : (int) v;
    }

    private static int[] nearest(int[] in, int width, int height, int outWidth, int outHeight) {
        double ax = (double) width / outWidth, ay = (double) height / outHeight;
        int[] xin = new int[outWidth];
        double xo = ax * 0.5;
        for (int x = 0; x < outWidth; x++) {
            xin[x] = coord(xo);
            xo += ax;
        }
        int[] out = new int[outWidth * outHeight];
        double yo = ay * 0.5;
        for (int y = 0; y < outHeight; y++) {
            int yi = coord(yo);
            for (int x = 0; x < outWidth; x++) {
                boolean inside = yi >= 0 && yi < height && xin[x] >= 0 && xin[x] < width;
                out[y * outWidth + x] = inside ? (0xFF000000 | in[yi * width + xin[x]]) : 0xFF000000;
            }
            yo += ay;
        }
        return out;
    }
}
