package dev.basisnet.core;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

/**
 * What LiteRT's GPU accelerator makes of one artifact, as the export recorded it in
 * {@code manifest.json} under {@code artifacts.<role>.gpu}: the accelerator's own verdict where
 * the export machine had a GPU (compiled, run on probe inputs, compared with the CPU), or a guess
 * from the artifact's kind where it had none ({@code "static-guess"}, whose reason starts with the
 * expected outcome). A manifest without a {@code gpu} object (older exports; their
 * {@code gpu_compatibility}, a static analyzer's opinion, is not trusted) gives {@link Status#UNKNOWN}.
 */
public final class GpuVerdict {
    public enum Status {
        /** Runs fully on the GPU and computes what the CPU computes. */
        RUNS,
        /** The accelerator does not compile it (an op or a kernel). */
        REFUSED,
        /** It compiles, but a shader fails or the outputs differ from the CPU's: garbage, not an error. */
        MISCOMPUTES,
        /** Nobody knows: no verdict in the manifest, or the export machine could not tell. */
        UNKNOWN
    }

    public static final GpuVerdict NONE = new GpuVerdict(Status.UNKNOWN,
            "the manifest has no GPU verdict for it", false, null, null);

    public final Status status;
    /** One line: the first unsupported op, the shader error, the guess's grounds; null when none given. */
    public final String reason;
    /** True when no GPU ran it: the status is the exporter's guess from the artifact's kind. */
    public final boolean guessed;
    /** The GPU the verdict was measured on, e.g. "SwiftShader Device (Subzero)"; null when none. */
    public final String adapter;
    /** Max |GPU - CPU| / max |CPU| over the export's probes; null when not run. */
    public final Double maxRel;

    GpuVerdict(Status status, String reason, boolean guessed, String adapter, Double maxRel) {
        this.status = status;
        this.reason = reason;
        this.guessed = guessed;
        this.adapter = adapter;
        this.maxRel = maxRel;
    }

    /** True when the artifact is known not to run right on the GPU (refused or miscomputed). */
    public boolean blocksGpu() {
        return status == Status.REFUSED || status == Status.MISCOMPUTES;
    }

    /**
     * The {@code gpu} object of one manifest artifact entry, or null/absent. Lenient: an unknown
     * status is {@link Status#UNKNOWN}, never a start-up failure (the GPU fallback still applies).
     */
    static GpuVerdict parse(JsonElement gpu) {
        if (gpu == null || gpu.isJsonNull() || !gpu.isJsonObject()) return NONE;
        JsonObject o = gpu.getAsJsonObject();
        String status = text(o, "status");
        String reason = text(o, "reason");
        String adapter = text(o, "adapter");
        JsonElement rel = o.get("max_rel");
        Double maxRel = rel != null && rel.isJsonPrimitive() && rel.getAsJsonPrimitive().isNumber() ? rel.getAsDouble() : null;
        if (status == null) return new GpuVerdict(Status.UNKNOWN, reason != null ? reason : "no GPU status", false, adapter, maxRel);
        switch (status) {
            case "runs":
                return new GpuVerdict(Status.RUNS, reason, false, adapter, maxRel);
            case "refused":
                return new GpuVerdict(Status.REFUSED, reason, false, adapter, maxRel);
            case "miscomputes":
                return new GpuVerdict(Status.MISCOMPUTES, reason, false, adapter, maxRel);
            case "no-device":
                return new GpuVerdict(Status.UNKNOWN, "the export machine had no GPU to run it on", false, adapter, maxRel);
            case "static-guess":
                return new GpuVerdict(guess(reason), reason, true, adapter, maxRel);
            default:
                return new GpuVerdict(Status.UNKNOWN, "GPU status '" + status + "' is not one this app knows", false,
                        adapter, maxRel);
        }
    }

    /** A static guess's reason starts with the expected outcome: "runs (...)", "refused (...)", "miscomputes (...)". */
    private static Status guess(String reason) {
        if (reason == null) return Status.UNKNOWN;
        if (reason.startsWith("runs")) return Status.RUNS;
        if (reason.startsWith("refused")) return Status.REFUSED;
        if (reason.startsWith("miscomputes")) return Status.MISCOMPUTES;
        return Status.UNKNOWN;
    }

    /**
     * The reason without a static guess's leading outcome word and its parentheses:
     * "refused (int8 weights behind DEQUANTIZE: ...)" becomes "int8 weights behind DEQUANTIZE: ...".
     */
    public String detail() {
        if (reason == null) return null;
        String r = reason.strip();
        if (guessed) {
            String word = status.name().toLowerCase(java.util.Locale.ROOT);
            if (r.startsWith(word)) r = r.substring(word.length()).strip();
            if (r.startsWith("(") && r.endsWith(")")) r = r.substring(1, r.length() - 1).strip();
        }
        int line = r.indexOf('\n');
        return line < 0 ? r : r.substring(0, line).strip();
    }

    private static String text(JsonObject o, String key) {
        JsonElement e = o.get(key);
        return e == null || e.isJsonNull() ? null : e.getAsString();
    }

    @Override
    public String toString() {
        return status.name().toLowerCase(java.util.Locale.ROOT) + (guessed ? " (static guess)" : "")
                + (reason == null ? "" : ": " + reason);
    }
}
