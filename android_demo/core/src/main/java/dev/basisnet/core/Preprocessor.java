package dev.basisnet.core;

/**
 * Frame pixels to an input tensor, exactly as {@code basisnet_deploy.data.preprocess} does it:
 * resize by the manifest's rule with Pillow's resampling, then scale [0, 255] to the input
 * range in float32, in the same operation order so the tensors are bit-identical.
 *
 * <p>Camera frames arrive upright ({@code ImageProxy.imageInfo.rotationDegrees} applied by the
 * caller), as packed ARGB ints.
 */
public final class Preprocessor {
    private final Preprocessing pre;

    public Preprocessor(Preprocessing pre) {
        this.pre = pre;
    }

    /** HWC float32 tensor [resolution, resolution, 3], RGB, in the manifest's input range. */
    public float[] tensor(int[] argb, int width, int height, int resolution) {
        int[] pixels = resized(argb, width, height, resolution);
        float range = (float) (pre.high - pre.low);
        float low = (float) pre.low;
        float[] out = new float[resolution * resolution * 3];
        for (int i = 0; i < resolution * resolution; i++) {
            int p = pixels[i];
            out[i * 3] = ((p >> 16) & 0xFF) / 255f * range + low;
            out[i * 3 + 1] = ((p >> 8) & 0xFF) / 255f * range + low;
            out[i * 3 + 2] = (p & 0xFF) / 255f * range + low;
        }
        return out;
    }

    /** The resized (and, for center_crop, cropped) pixels, resolution x resolution. */
    public int[] resized(int[] argb, int width, int height, int resolution) {
        if (pre.resize == Preprocessing.Resize.SQUASH) {
            return PillowResize.resize(argb, width, height, resolution, resolution, pre.interpolation);
        }
        // Short side to resolution / crop_fraction (Python's round: half to even), then the centre square.
        long shortSide = Math.round(Math.rint(resolution / pre.cropFraction));
        double scale = (double) shortSide / Math.min(width, height);
        int nw = Math.max(resolution, (int) Math.rint(width * scale));
        int nh = Math.max(resolution, (int) Math.rint(height * scale));
        int[] big = PillowResize.resize(argb, width, height, nw, nh, pre.interpolation);
        int left = (nw - resolution) / 2, top = (nh - resolution) / 2;
        int[] out = new int[resolution * resolution];
        for (int y = 0; y < resolution; y++) {
            System.arraycopy(big, (top + y) * nw + left, out, y * resolution, resolution);
        }
        return out;
    }

    /**
     * Float input to an int8/uint8 model input: {@code clip(round(x / scale + zero_point))}, round
     * half to even in float32, as the Python runtime feeds quantized inputs.
     */
    public static byte[] quantize(float[] x, float scale, int zeroPoint, boolean unsigned) {
        int lo = unsigned ? 0 : -128, hi = unsigned ? 255 : 127;
        byte[] out = new byte[x.length];
        for (int i = 0; i < x.length; i++) {
            float q = (float) Math.rint(x[i] / scale + (float) zeroPoint);
            out[i] = (byte) (int) Math.max(lo, Math.min(hi, q));
        }
        return out;
    }
}
