package dev.basisnet.core;

import java.util.Arrays;

/** One input or output of an artifact, as manifest.json records it. */
public final class TensorSpec {
    public final String name;
    public final String dtype; // "float32", "int8", "uint8"
    public final int[] shape;
    /** Input quantization; {@code scale == 0} when the tensor is not quantized. */
    public final float scale;
    public final int zeroPoint;

    public TensorSpec(String name, String dtype, int[] shape, float scale, int zeroPoint) {
        this.name = name;
        this.dtype = dtype;
        this.shape = shape.clone();
        this.scale = scale;
        this.zeroPoint = zeroPoint;
    }

    public boolean isQuantized() {
        return scale != 0f && ("int8".equals(dtype) || "uint8".equals(dtype));
    }

    public int elements() {
        int n = 1;
        for (int d : shape) n *= d;
        return n;
    }

    @Override
    public String toString() {
        return name + ":" + dtype + Arrays.toString(shape);
    }
}
