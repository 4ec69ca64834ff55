package androidx.camera.core.resolutionselector;

public final class ResolutionSelector {
    public static final class Builder {
        public Builder() { throw new RuntimeException("Stub!"); }
        public Builder setResolutionStrategy(ResolutionStrategy resolutionStrategy) { throw new RuntimeException("Stub!"); }
        public ResolutionSelector build() { throw new RuntimeException("Stub!"); }
    }
}
