package android.app;

public class Activity extends android.content.Context {
    protected void onCreate(android.os.Bundle savedInstanceState) { throw new RuntimeException("Stub!"); }
    public android.content.res.AssetManager getAssets() { throw new RuntimeException("Stub!"); }
    public android.content.Context getApplicationContext() { throw new RuntimeException("Stub!"); }
    public java.io.File getCacheDir() { throw new RuntimeException("Stub!"); }
}
