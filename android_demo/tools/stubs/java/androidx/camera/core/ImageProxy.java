package androidx.camera.core;

public interface ImageProxy extends AutoCloseable {
    @Override
    void close();
    int getWidth();
    int getHeight();
    PlaneProxy[] getPlanes();
    ImageInfo getImageInfo();

    interface PlaneProxy {
        int getRowStride();
        int getPixelStride();
        java.nio.ByteBuffer getBuffer();
    }
}
