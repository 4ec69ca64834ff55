package androidx.camera.view;

public class PreviewView extends android.view.View {
    public PreviewView(android.content.Context context) { super(context); throw new RuntimeException("Stub!"); }
    public androidx.camera.core.Preview.SurfaceProvider getSurfaceProvider() { throw new RuntimeException("Stub!"); }
}
