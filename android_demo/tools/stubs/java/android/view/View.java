package android.view;

public class View {
    public View(android.content.Context context) { throw new RuntimeException("Stub!"); }
}
