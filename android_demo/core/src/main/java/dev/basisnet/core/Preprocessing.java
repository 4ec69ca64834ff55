package dev.basisnet.core;

/** How a frame becomes an input tensor: the manifest's "preprocessing" block. */
public final class Preprocessing {
    public enum Resize { SQUASH, CENTER_CROP }

    public enum Interpolation { NEAREST, BILINEAR, BICUBIC }

    public final Resize resize;
    public final double cropFraction;
    public final double low;
    public final double high;
    public final Interpolation interpolation;
    public final int lightweightResolution;
    public final int specialistResolution;

    public Preprocessing(Resize resize, double cropFraction, double low, double high,
                         Interpolation interpolation, int lightweightResolution, int specialistResolution) {
        this.resize = resize;
        this.cropFraction = cropFraction;
        this.low = low;
        this.high = high;
        this.interpolation = interpolation;
        this.lightweightResolution = lightweightResolution;
        this.specialistResolution = specialistResolution;
    }
}
