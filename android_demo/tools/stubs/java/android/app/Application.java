package android.app;

public class Application extends android.content.Context {
    public android.content.res.AssetManager getAssets() { throw new RuntimeException("Stub!"); }
    public android.content.Context getApplicationContext() { throw new RuntimeException("Stub!"); }
    public java.io.File getCacheDir() { throw new RuntimeException("Stub!"); }
}
