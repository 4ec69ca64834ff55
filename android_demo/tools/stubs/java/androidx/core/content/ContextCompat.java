package androidx.core.content;

public class ContextCompat {
    public static int checkSelfPermission(android.content.Context context, String permission) { throw new RuntimeException("Stub!"); }
    public static java.util.concurrent.Executor getMainExecutor(android.content.Context context) { throw new RuntimeException("Stub!"); }
}
