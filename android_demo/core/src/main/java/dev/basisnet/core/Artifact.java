package dev.basisnet.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;

/** One model file of the export, its interface, how its numbers are stored and what LiteRT's GPU makes of it. */
public final class Artifact {
    /** {@code artifacts.<role>.quantization}: how the artifact's weights and activations are stored. */
    public enum Quantization {
        FLOAT32("float32"),
        FLOAT16("float16 weights"),
        /** Static int8: int8 weights and int8 activations (the {@code full} int8 recipe). */
        INT8("int8 activations"),
        /** Dynamic range: int8 weights, activations quantized per frame on the CPU, float on the GPU. */
        DYNAMIC("int8 weights, float activations"),
        /** Int8 weights behind DEQUANTIZE, float activations and arithmetic (the {@code fidelity} recipe's template). */
        WEIGHT_ONLY("int8 weights behind DEQUANTIZE"),
        /** A value this app does not know. */
        UNKNOWN("unknown quantization");

        /** A few words for a message, e.g. "int8 activations". */
        public final String description;

        Quantization(String description) {
            this.description = description;
        }

        /** The manifest's string ("float32", "weight_only", ...); an unknown one is {@link #UNKNOWN}. */
        public static Quantization of(String value) {
            if (value == null) return UNKNOWN;
            try {
                return valueOf(value.toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                return UNKNOWN;
            }
        }
    }

    public final String role; // "lightweight", "specialist_coefficient", "specialist_presynth"
    public final String file;
    public final String sha256;
    public final Quantization quantization;
    /** LiteRT's GPU verdict from the manifest; {@link GpuVerdict#NONE} (unknown) for older manifests. */
    public final GpuVerdict gpu;
    public final List<TensorSpec> inputs;
    public final List<TensorSpec> outputs;

    Artifact(String role, String file, String sha256, Quantization quantization, GpuVerdict gpu,
             List<TensorSpec> inputs, List<TensorSpec> outputs) {
        this.role = role;
        this.file = file;
        this.sha256 = sha256;
        this.quantization = quantization;
        this.gpu = gpu;
        this.inputs = Collections.unmodifiableList(new ArrayList<>(inputs));
        this.outputs = Collections.unmodifiableList(new ArrayList<>(outputs));
    }

    public TensorSpec input(String name) {
        for (TensorSpec t : inputs) if (t.name.equals(name)) return t;
        throw new ManifestException(role + ": no input named '" + name + "' (has " + inputs + ")");
    }

    public TensorSpec output(String name) {
        for (TensorSpec t : outputs) if (t.name.equals(name)) return t;
        throw new ManifestException(role + ": no output named '" + name + "' (has " + outputs + ")");
    }

    /**
     * Why this artifact must not go on LiteRT's GPU, in one line that names the fix, or null when
     * it runs there or nobody knows (an older manifest: the GPU is tried and a failed compile
     * falls back to the CPU). E.g. "this export's specialist_presynth miscomputes on LiteRT's GPU
     * (int8 activations); export with --quantize float16 for the GPU".
     */
    public String gpuProblem() {
        if (!gpu.blocksGpu()) return null;
        String verb;
        if (gpu.status == GpuVerdict.Status.MISCOMPUTES) {
            verb = gpu.guessed ? "would miscompute on" : "miscomputes on";
        } else {
            verb = gpu.guessed ? "would be refused by" : "is refused by";
        }
        // Int8 activations and int8 weights behind DEQUANTIZE are what the GPU cannot take; a
        // float16 export runs there. Anything else the GPU rejects has no known fix to name.
        boolean int8 = quantization == Quantization.INT8 || quantization == Quantization.WEIGHT_ONLY;
        String detail = gpu.detail();
        String why = int8 || detail == null || detail.isEmpty() ? quantization.description : shorten(detail, 100);
        return "this export's " + role + " " + verb + " LiteRT's GPU (" + why + "); " + (int8 ? GPU_FIX : CHECK);
    }

    /** The export that runs on the GPU: every artifact float16 (the LM, both specialist forms). */
    public static final String GPU_FIX = "export with --quantize float16 for the GPU";
    private static final String CHECK = "`basisnet-deploy check EXPORT` on a machine with a GPU shows the details";

    private static String shorten(String s, int max) {
        return s.length() <= max ? s : s.substring(0, max - 1) + "…";
    }
}
