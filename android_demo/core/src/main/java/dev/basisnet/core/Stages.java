package dev.basisnet.core;

/** The two stage interfaces the scheduler runs; the app implements them on LiteRT. */
public final class Stages {
    private Stages() {
    }

    /** Class logits and the [L][K] coefficient rows of one frame. */
    public static final class Preview {
        public final float[] logits;
        public final float[][] coefficients;

        public Preview(float[] logits, float[][] coefficients) {
            this.logits = logits;
            this.coefficients = coefficients;
        }
    }

    /** The lightweight model. Created, run and closed on the lightweight thread only. */
    public interface Lightweight<F> extends AutoCloseable {
        Preview run(F frame) throws Exception;

        /** Where it runs, for the overlay: "CPU (XNNPACK)", ... */
        String processor();

        @Override
        void close();
    }

    /** The specialist. Created, run and closed on the specialist thread only. */
    public interface Specialist<F> extends AutoCloseable {
        float[] run(F frame, float[][] coefficients) throws Exception;

        String processor();

        /** Milliseconds spent re-synthesizing for the last frame; 0 when it reused its model. */
        default double lastSynthesisMs() {
            return 0;
        }

        @Override
        void close();
    }

    /** Makes a stage; called on the thread that will own it (GPU contexts are thread-bound). */
    public interface Factory<T> {
        T create() throws Exception;
    }
}
