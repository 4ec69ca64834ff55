package android.content.res;

public final class AssetManager implements AutoCloseable {
    public java.io.InputStream open(String fileName) throws java.io.IOException { throw new RuntimeException("Stub!"); }
    public AssetFileDescriptor openFd(String fileName) throws java.io.IOException { throw new RuntimeException("Stub!"); }
    public void close() { throw new RuntimeException("Stub!"); }
}
