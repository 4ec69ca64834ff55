package android.content.res;

public class AssetFileDescriptor implements java.io.Closeable, AutoCloseable {
    public java.io.FileDescriptor getFileDescriptor() { throw new RuntimeException("Stub!"); }
    public long getStartOffset() { throw new RuntimeException("Stub!"); }
    public long getLength() { throw new RuntimeException("Stub!"); }
    public void close() throws java.io.IOException { throw new RuntimeException("Stub!"); }
}
