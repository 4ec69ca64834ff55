package dev.basisnet.core;

import java.util.Set;

/**
 * Which processor a model really runs on, and why not the one asked for. The app asks LiteRT
 * for the accelerators the device has and tries to compile the model on the wanted one; a
 * missing accelerator, or one that rejects the model, falls back to the CPU, and the overlay
 * shows the reason instead of the app crashing.
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

    private Placement(T model, Processor wanted, Processor actual, String fallbackReason) {
        this.model = model;
        this.wanted = wanted;
        this.actual = actual;
        this.fallbackReason = fallbackReason;
    }

    /** "GPU", or "CPU (XNNPACK), GPU unavailable: <reason>". */
    public String label() {
        if (fallbackReason == null) return actual.label;
        return actual.label + ", " + wanted.name() + " unavailable: " + fallbackReason;
    }

    /**
     * Opens on {@code wanted} if {@code available} has it and it accepts the model, else on the CPU.
     * A CPU failure is not caught: with no processor left it is the caller's error to show.
     */
    public static <T> Placement<T> open(Processor wanted, Set<Processor> available, Opener<T> opener) throws Exception {
        if (wanted == Processor.CPU) return new Placement<>(opener.open(Processor.CPU), wanted, Processor.CPU, null);
        String reason;
        if (!available.contains(wanted)) {
            reason = "this device has no " + wanted.name() + " accelerator (has " + available + ")";
        } else {
            try {
                return new Placement<>(opener.open(wanted), wanted, wanted, null);
            } catch (Exception e) {
                reason = "it rejected the model (" + describe(e) + ")";
            }
        }
        return new Placement<>(opener.open(Processor.CPU), wanted, Processor.CPU, reason);
    }

    static String describe(Throwable e) {
        String m = e.getMessage();
        return m == null || m.isEmpty() ? e.getClass().getSimpleName() : m;
    }
}
