package dev.basisnet.core;

import java.util.Set;

/**
 * Which processor a model really runs on, and why not the one asked for. The app asks LiteRT
 * for the accelerators the device has and tries to compile the model on the wanted one; a
 * missing accelerator, or one that rejects the model, falls back to the CPU, and the overlay
 * shows the reason instead of the app crashing.
 *
 * <p>With the artifact's manifest entry ({@link #open(Processor, Set, Artifact, Opener)}), the
 * export's GPU verdict decides first: an artifact the GPU is known to refuse or to miscompute
 * (static int8 activations compile on the GPU and return garbage; no exception says so) is never
 * compiled there; it runs on the CPU and the label names the fix.
 */
public final class Placement<T> {
    public enum Processor {
        CPU("CPU (XNNPACK)"),
        GPU("GPU"),
        NPU("NPU");

        public final String label;

        Processor(String label) {
            this.label = label;
        }
    }

    /** Compiles the model for one processor (the app: {@code CompiledModel.create}). */
    public interface Opener<T> {
        T open(Processor processor) throws Exception;
    }

    public final T model;
    public final Processor wanted;
    public final Processor actual;
    /** Null when the wanted processor is used; else why it was not. */
    public final String fallbackReason;
    private final String label;

    private Placement(T model, Processor wanted, Processor actual, String fallbackReason, String label) {
        this.model = model;
        this.wanted = wanted;
        this.actual = actual;
        this.fallbackReason = fallbackReason;
        this.label = label;
    }

    /**
     * For the overlay: "GPU", "CPU (XNNPACK), GPU unavailable: <reason>", "GPU (coefficient-input:
     * one compiled model for every frame)", or "CPU (XNNPACK): this export's specialist_presynth
     * miscomputes on LiteRT's GPU (int8 activations); export with --quantize float16 for the GPU".
     */
    public String label() {
        return label;
    }

    /**
     * Opens on {@code wanted} if {@code available} has it and it accepts the model, else on the CPU.
     * A CPU failure is not caught: with no processor left it is the caller's error to show.
     */
    public static <T> Placement<T> open(Processor wanted, Set<Processor> available, Opener<T> opener) throws Exception {
        return open(wanted, available, null, opener);
    }

    /**
     * As {@link #open(Processor, Set, Opener)}, deciding first from {@code artifact}'s GPU verdict
     * ({@link #plan}): known not to run right on the GPU, it is opened on the CPU without trying
     * the GPU. Unknown (an older manifest): the GPU is tried, and a failed compile falls back.
     */
    public static <T> Placement<T> open(Processor wanted, Set<Processor> available, Artifact artifact,
                                        Opener<T> opener) throws Exception {
        Plan plan = plan(wanted, available, artifact);
        if (plan.processor == Processor.CPU) {
            return new Placement<>(opener.open(Processor.CPU), wanted, Processor.CPU, plan.fallbackReason, plan.label);
        }
        try {
            return new Placement<>(opener.open(plan.processor), wanted, plan.processor, null, plan.label);
        } catch (Exception e) {
            String reason = "it rejected the model (" + describe(e) + ")";
            return new Placement<>(opener.open(Processor.CPU), wanted, Processor.CPU, reason,
                    fallbackLabel(wanted, reason));
        }
    }

    /** Where {@link #open} will put a model before any compile, and the label it will show if the compile succeeds. */
    public static final class Plan {
        public final Processor processor;
        /** Null when {@code processor} is the wanted one. */
        public final String fallbackReason;
        public final String label;

        Plan(Processor processor, String fallbackReason, String label) {
            this.processor = processor;
            this.fallbackReason = fallbackReason;
            this.label = label;
        }
    }

    /**
     * The decision {@link #open} makes before compiling: the device's accelerators first, then
     * the artifact's GPU verdict (null artifact: none). A CPU placement of an artifact the
     * device's GPU cannot run right says why in its label, whether the CPU was asked for (the
     * defaults, {@link DemoSettings#defaults}) or the GPU was.
     */
    public static Plan plan(Processor wanted, Set<Processor> available, Artifact artifact) {
        String problem = artifact != null && available.contains(Processor.GPU) ? artifact.gpuProblem() : null;
        if (wanted == Processor.CPU) {
            return new Plan(Processor.CPU, null, problem == null ? Processor.CPU.label : Processor.CPU.label + ": " + problem);
        }
        if (!available.contains(wanted)) {
            String reason = "this device has no " + wanted.name() + " accelerator (has " + available + ")";
            return new Plan(Processor.CPU, reason, fallbackLabel(wanted, reason));
        }
        if (wanted == Processor.GPU && problem != null) {
            return new Plan(Processor.CPU, problem, Processor.CPU.label + ": " + problem);
        }
        return new Plan(wanted, null, wanted == Processor.GPU ? gpuLabel(artifact) : wanted.label);
    }

    /** "GPU", and for a specialist what its form costs there. */
    private static String gpuLabel(Artifact artifact) {
        String label = Processor.GPU.label;
        if (artifact == null) return label;
        if (DemoSettings.Form.COEFFICIENT.role.equals(artifact.role)) {
            label += " (coefficient-input: one compiled model for every frame)";
        } else if (DemoSettings.Form.PRESYNTH.role.equals(artifact.role)) {
            label += " (pre-synthesized: each re-synthesis is a new GPU compile)";
        }
        if (artifact.gpu.status == GpuVerdict.Status.UNKNOWN) label += ", GPU verdict unknown: " + artifact.gpu.reason;
        return label;
    }

    private static String fallbackLabel(Processor wanted, String reason) {
        return Processor.CPU.label + ", " + wanted.name() + " unavailable: " + reason;
    }

    static String describe(Throwable e) {
        String m = e.getMessage();
        return m == null || m.isEmpty() ? e.getClass().getSimpleName() : m;
    }
}
