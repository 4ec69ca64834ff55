package dev.basisnet.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** One row of specialist_patches.json: where one non-shared conv's bytes sit in the template. */
public final class Patch {
    public final String layer;
    public final int slot; // row of the [L, K] coefficients that mixes this layer
    public final String kind; // "conv" (OHWI) or "depthwise" ([1, H, W, C])
    public final int[] shape;
    public final String dtype; // "float32", "float16" or "int8"
    public final int weightOffset;
    public final int scaleOffset;
    public final int biasOffset;
    public final int biasScaleOffset;
    public final double inputScale;
    /** Output-channel axis in the template's layout; -1: TFLite's, by kind (ONNX writes 0). */
    public final int axis;

    Patch(String layer, int slot, String kind, int[] shape, String dtype, int weightOffset, int scaleOffset,
          int biasOffset, int biasScaleOffset, double inputScale, int axis) {
        this.layer = layer;
        this.slot = slot;
        this.kind = kind;
        this.shape = shape;
        this.dtype = dtype;
        this.weightOffset = weightOffset;
        this.scaleOffset = scaleOffset;
        this.biasOffset = biasOffset;
        this.biasScaleOffset = biasScaleOffset;
        this.inputScale = inputScale;
        this.axis = axis;
    }

    public int elements() {
        int n = 1;
        for (int d : shape) n *= d;
        return n;
    }

    /** Output-channel axis in the template's layout. */
    public int channelAxis() {
        if (axis >= 0) return axis;
        return kind.equals("depthwise") ? 3 : 0;
    }

    /** Elements between consecutive channels along {@link #channelAxis()}. */
    public int channelStride() {
        int stride = 1;
        for (int d = channelAxis() + 1; d < shape.length; d++) stride *= shape[d];
        return stride;
    }

    public boolean hasBias() {
        return biasOffset >= 0;
    }

    public int channels() {
        return shape[channelAxis()];
    }

    /** Parses the patch table JSON (a list of patches). */
    public static List<Patch> parseTable(String json) {
        List<Patch> out = new ArrayList<>();
        try {
            JsonArray rows = JsonParser.parseString(json).getAsJsonArray();
            for (JsonElement e : rows) {
                JsonObject o = e.getAsJsonObject();
                JsonArray dims = o.getAsJsonArray("shape");
                int[] shape = Manifest.ints(dims);
                String kind = o.get("kind").getAsString();
                String dtype = o.get("dtype").getAsString();
                if (!kind.equals("conv") && !kind.equals("depthwise")) {
                    throw new ManifestException("specialist_patches.json: unknown kind '" + kind + "'");
                }
                if (!dtype.equals("float32") && !dtype.equals("float16") && !dtype.equals("int8")) {
                    throw new ManifestException("specialist_patches.json: unknown dtype '" + dtype + "'");
                }
                if (o.has("per_tensor") && o.get("per_tensor").getAsBoolean()) {
                    // one scale per kernel: onnxruntime's dynamic template, never a TFLite one
                    throw new ManifestException("specialist_patches.json: per-tensor patches belong to an ONNX "
                            + "export; the Android core patches TFLite templates");
                }
                if (o.has("bias_dtype") && !o.get("bias_dtype").getAsString().equals("int32")) {
                    // an int64 bias: a template with int16 activations (the full-16x8 recipe)
                    throw new ManifestException("specialist_patches.json: a template with int16 activations ("
                            + o.get("bias_dtype").getAsString() + " bias); the Android core patches int8 and "
                            + "float templates: export with --int8-recipe full or fidelity");
                }
                out.add(new Patch(o.get("layer").getAsString(), o.get("slot").getAsInt(), kind, shape, dtype,
                        o.get("weight_offset").getAsInt(), o.get("scale_offset").getAsInt(),
                        o.get("bias_offset").getAsInt(), o.get("bias_scale_offset").getAsInt(),
                        o.get("input_scale").getAsDouble(), o.has("axis") ? o.get("axis").getAsInt() : -1));
            }
        } catch (JsonParseException | IllegalStateException | NullPointerException | ClassCastException e) {
            throw new ManifestException("specialist_patches.json: not a patch table written by basisnet-deploy ("
                    + e.getMessage() + "); re-run basisnet-deploy android-assets");
        }
        return Collections.unmodifiableList(out);
    }
}
