package dev.basisnet.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * manifest.json (schema version 1) as written by {@code basisnet-deploy export}.
 *
 * <p>Parsing is strict where a wrong value would silently mis-run a model (schema version,
 * preprocessing, tensor shapes) and every error names the field, so a stale or hand-edited
 * manifest fails at start-up instead of producing wrong answers.
 */
public final class Manifest {
    public static final int SCHEMA_VERSION = 1;
    private static final String PRE = "preprocessing";

    public final String target;
    public final String quantization;
    public final List<String> labels;
    public final Preprocessing preprocessing;
    public final int coefficientRows; // L: one row per non-shared block
    public final int bases; // K
    public final List<String> blocks;
    /** Early-exit confidence from calibrate-threshold, or null when none was set. */
    public final Float threshold;
    public final Map<String, Artifact> artifacts;
    /** Presynth extras: patch table file, raw bases file (android-assets), baked coefficients. */
    public final String patchTableFile;
    public final String basesRawFile;
    /** sha256 of the patch table and of the raw bases, as the manifest records them. */
    public final String patchTableSha256;
    public final String basesRawSha256;
    public final Map<String, BasesFile.Entry> basesRawIndex;
    /** The compact int8 bases written raw by android-assets (bases_int8_raw), or null/empty when absent. */
    public final String basesInt8RawFile;
    public final Map<String, CompactBases.Entry> basesInt8RawIndex;
    public final long lightweightMadds;
    public final long specialistMadds;

    private Manifest(JsonObject root) {
        int version = integer(root, "schema_version");
        if (version > SCHEMA_VERSION) {
            throw new ManifestException("manifest.json: schema_version " + version + " is not supported (this app reads "
                    + SCHEMA_VERSION + "): the export was written by a newer basisnet-deploy; update the app, or "
                    + "re-export with the basisnet-deploy version that matches the app");
        }
        if (version != SCHEMA_VERSION) {
            throw new ManifestException("manifest.json: schema_version " + version + " is not supported (this app reads "
                    + SCHEMA_VERSION + "); re-export with the basisnet-deploy version that matches the app");
        }
        target = string(root, "target");
        quantization = string(root, "quantization");
        List<String> names = new ArrayList<>();
        for (JsonElement e : array(root, "labels")) names.add(e.getAsString());
        labels = Collections.unmodifiableList(names);

        JsonObject p = object(root, "preprocessing");
        JsonArray range = array(p, "input_range", PRE);
        preprocessing = new Preprocessing(
                enumValue(Preprocessing.Resize.class, string(p, "resize", PRE), PRE + ".resize"),
                field(p, "crop_fraction", PRE).getAsDouble(), range.get(0).getAsDouble(), range.get(1).getAsDouble(),
                enumValue(Preprocessing.Interpolation.class, string(p, "interpolation", PRE), PRE + ".interpolation"),
                field(p, "lightweight_resolution", PRE).getAsInt(), field(p, "specialist_resolution", PRE).getAsInt());
        if (!(preprocessing.low < preprocessing.high)) {
            throw new ManifestException("manifest.json: preprocessing.input_range must be [low, high] with low < high");
        }

        JsonObject c = object(root, "coefficients");
        JsonArray shape = array(c, "shape");
        coefficientRows = shape.get(0).getAsInt();
        bases = shape.get(1).getAsInt();
        List<String> b = new ArrayList<>();
        for (JsonElement e : array(c, "blocks")) b.add(e.getAsString());
        blocks = Collections.unmodifiableList(b);

        JsonElement exit = root.get("early_exit");
        if (exit != null && exit.isJsonObject() && exit.getAsJsonObject().has("threshold")
                && !exit.getAsJsonObject().get("threshold").isJsonNull()) {
            threshold = (float) exit.getAsJsonObject().get("threshold").getAsDouble();
        } else {
            threshold = null;
        }

        Map<String, Artifact> arts = new LinkedHashMap<>();
        String table = null, raw = null, tableSha = null, rawSha = null;
        Map<String, BasesFile.Entry> index = Collections.emptyMap();
        String raw8 = null;
        Map<String, CompactBases.Entry> index8 = Collections.emptyMap();
        for (Map.Entry<String, JsonElement> e : object(root, "artifacts").entrySet()) {
            JsonObject a = e.getValue().getAsJsonObject();
            String where = "artifacts." + e.getKey();
            arts.put(e.getKey(), new Artifact(e.getKey(), string(a, "file", where), string(a, "sha256", where),
                    Artifact.Quantization.of(string(a, "quantization", where)), GpuVerdict.parse(a.get("gpu")),
                    tensors(array(a, "inputs", where), where + ".inputs"),
                    tensors(array(a, "outputs", where), where + ".outputs")));
            if (e.getKey().equals("specialist_presynth")) {
                table = string(a, "patch_table", where);
                tableSha = string(a, "patch_table_sha256", where);
                if (a.has("bases_raw")) {
                    JsonObject r = object(a, "bases_raw", where);
                    raw = string(r, "file", where + ".bases_raw");
                    rawSha = string(r, "sha256", where + ".bases_raw");
                    index = BasesFile.index(object(r, "tensors", where + ".bases_raw"));
                }
                if (a.has("bases_int8_raw")) {
                    JsonObject r = object(a, "bases_int8_raw", where);
                    String format = string(r, "format", where + ".bases_int8_raw");
                    if (!format.equals(CompactBases.FORMAT)) {
                        throw new ManifestException("manifest.json: " + where + ".bases_int8_raw.format '" + format
                                + "' is not " + CompactBases.FORMAT + "; re-run basisnet-deploy android-assets");
                    }
                    raw8 = string(r, "file", where + ".bases_int8_raw");
                    index8 = CompactBases.index(object(r, "tensors", where + ".bases_int8_raw"));
                }
            }
        }
        artifacts = Collections.unmodifiableMap(arts);
        patchTableFile = table;
        basesRawFile = raw;
        patchTableSha256 = tableSha;
        basesRawSha256 = rawSha;
        basesRawIndex = index;
        basesInt8RawFile = raw8;
        basesInt8RawIndex = index8;

        JsonElement cost = root.get("cost");
        long lm = 0, sp = 0;
        if (cost != null && cost.isJsonObject() && cost.getAsJsonObject().has("stages")) {
            JsonObject stages = cost.getAsJsonObject().getAsJsonObject("stages");
            lm = stages.getAsJsonObject("lightweight").get("madds").getAsLong();
            sp = stages.getAsJsonObject("specialist").get("madds").getAsLong();
        }
        lightweightMadds = lm;
        specialistMadds = sp;
    }

    /** Parses manifest.json text; throws {@link ManifestException} naming the bad field. */
    public static Manifest parse(String json) {
        JsonElement root;
        try {
            root = JsonParser.parseString(json);
        } catch (JsonParseException e) {
            throw new ManifestException("manifest.json: not valid JSON (" + e.getMessage() + "); re-export or re-copy it");
        }
        if (!root.isJsonObject()) throw new ManifestException("manifest.json: expected a JSON object");
        try {
            return new Manifest(root.getAsJsonObject());
        } catch (IllegalStateException | ClassCastException | UnsupportedOperationException
                 | IndexOutOfBoundsException | NumberFormatException e) {
            throw new ManifestException("manifest.json: a field has the wrong type (" + e.getMessage() + ")");
        }
    }

    public Artifact artifact(String role) {
        Artifact a = artifacts.get(role);
        if (a == null) {
            throw new ManifestException("manifest.json: the export has no " + role + " artifact (it has "
                    + artifacts.keySet() + "); re-export with --specialist all");
        }
        return a;
    }

    public boolean hasArtifact(String role) {
        return artifacts.containsKey(role);
    }

    /** The flat [1, L, K] coefficient output of the lightweight model as rows [L][K]. */
    public float[][] coefficientRows(float[] flat) {
        if (flat.length != coefficientRows * bases) {
            throw new IllegalArgumentException("coefficients: got " + flat.length + " values, manifest says "
                    + coefficientRows + "x" + bases);
        }
        float[][] rows = new float[coefficientRows][bases];
        for (int l = 0; l < coefficientRows; l++) System.arraycopy(flat, l * bases, rows[l], 0, bases);
        return rows;
    }

    private static List<TensorSpec> tensors(JsonArray items, String where) {
        List<TensorSpec> out = new ArrayList<>();
        for (JsonElement e : items) {
            JsonObject t = e.getAsJsonObject();
            JsonArray dims = array(t, "shape", where);
            int[] shape = Manifest.ints(dims);
            float scale = 0f;
            int zero = 0;
            JsonElement q = t.get("quantization");
            if (q != null && q.isJsonObject()) {
                scale = (float) q.getAsJsonObject().get("scale").getAsDouble();
                zero = q.getAsJsonObject().get("zero_point").getAsInt();
            }
            out.add(new TensorSpec(string(t, "name", where), string(t, "dtype", where), shape, scale, zero));
        }
        return out;
    }

    /** A JSON array of integers (a shape). */
    static int[] ints(JsonArray values) {
        int[] out = new int[values.size()];
        for (int i = 0; i < out.length; i++) out[i] = values.get(i).getAsInt();
        return out;
    }

    private static <E extends Enum<E>> E enumValue(Class<E> type, String value, String where) {
        try {
            return Enum.valueOf(type, value.toUpperCase(java.util.Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new ManifestException("manifest.json: " + where + " '" + value + "' is not one this app knows");
        }
    }

    private static JsonElement field(JsonObject o, String key, String where) {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) {
            throw new ManifestException("manifest.json: " + (where.isEmpty() ? "" : where + ".") + key
                    + " is missing; re-export with basisnet-deploy export");
        }
        return e;
    }

    private static String string(JsonObject o, String key) {
        return string(o, key, "");
    }

    private static String string(JsonObject o, String key, String where) {
        return field(o, key, where).getAsString();
    }

    private static int integer(JsonObject o, String key) {
        return field(o, key, "").getAsInt();
    }

    private static JsonObject object(JsonObject o, String key) {
        return object(o, key, "");
    }

    static JsonObject object(JsonObject o, String key, String where) {
        return field(o, key, where).getAsJsonObject();
    }

    private static JsonArray array(JsonObject o, String key) {
        return array(o, key, "");
    }

    static JsonArray array(JsonObject o, String key, String where) {
        return field(o, key, where).getAsJsonArray();
    }
}
