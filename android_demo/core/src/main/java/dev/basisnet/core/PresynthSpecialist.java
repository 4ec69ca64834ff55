package dev.basisnet.core;

/**
 * The pre-synthesized specialist form: a static-weight model rebuilt from the template when the
 * {@link ResynthesisPolicy} says so, then run as an ordinary model (XNNPACK, GPU or NPU accelerators apply).
 * The coefficients of a frame are used only to decide and to synthesize.
 */
public final class PresynthSpecialist<F> implements Stages.Specialist<F> {
    /** Loads synthesized model bytes into a runnable model (the app: a LiteRT CompiledModel). */
    public interface Loader<F> {
        Stages.Specialist<F> load(byte[] model) throws Exception;
    }

    private final Synthesizer synthesizer;
    private final ResynthesisPolicy policy;
    private final Loader<F> loader;
    private Stages.Specialist<F> model;
    private float[][] current;
    private int uses;
    private int resyntheses;
    private double lastSynthesisMs;

    public PresynthSpecialist(Synthesizer synthesizer, ResynthesisPolicy policy, Loader<F> loader) {
        this.synthesizer = synthesizer;
        this.policy = policy;
        this.loader = loader;
    }

    @Override
    public float[] run(F frame, float[][] coefficients) throws Exception {
        lastSynthesisMs = 0;
        if (policy.needed(current, coefficients, uses)) {
            long t = System.nanoTime();
            byte[] bytes = synthesizer.synthesize(coefficients);
            Stages.Specialist<F> next = loader.load(bytes);
            if (model != null) model.close();
            model = next;
            current = copy(coefficients);
            uses = 0;
            resyntheses++;
            lastSynthesisMs = (System.nanoTime() - t) / 1e6;
        }
        uses++;
        return model.run(frame, coefficients);
    }

    @Override
    public String processor() {
        return model == null ? "not loaded" : model.processor();
    }

    @Override
    public double lastSynthesisMs() {
        return lastSynthesisMs;
    }

    public int resyntheses() {
        return resyntheses;
    }

    @Override
    public void close() {
        if (model != null) model.close();
        model = null;
    }

    private static float[][] copy(float[][] rows) {
        float[][] out = new float[rows.length][];
        for (int i = 0; i < rows.length; i++) out[i] = rows[i].clone();
        return out;
    }
}
