package dev.basisnet.core;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * specialist_bases_int8.bin: the compact bases ({@code basisnet_deploy.artifacts.compact_bases}),
 * raw, as {@code basisnet-deploy android-assets} writes them for the app to memory-map. For every
 * patched layer L: {@code L/q8} int8 [K, *S], {@code L/scales} float32 LE [K, C] (basis k's
 * value is {@code q8[k] * scales[k, c]}), and where the layer has one {@code L/bias} float32 LE
 * [C]. The manifest's {@code bases_int8_raw.tensors} maps each name to its byte offset, shape
 * and dtype. A quarter of the float32 bases' bytes (plus K*C scales per layer).
 */
public final class CompactBases {
    public static final String FORMAT = "basisnet-compact-bases/1";
    static final String FILE = "specialist_bases_int8.bin";

    public static final class Entry {
        public final long offset;
        public final int[] shape;
        public final String dtype; // "int8" or "float32"

        public Entry(long offset, int[] shape, String dtype) {
            this.offset = offset;
            this.shape = shape;
            this.dtype = dtype;
        }

        public int elements() {
            int n = 1;
            for (int d : shape) n *= d;
            return n;
        }

        int itemSize() {
            return dtype.equals("int8") ? 1 : 4;
        }
    }

    private final ByteBuffer data;
    private final Map<String, Entry> index;

    public CompactBases(ByteBuffer data, Map<String, Entry> index) {
        this.data = data.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        this.index = index;
        for (Map.Entry<String, Entry> e : index.entrySet()) {
            Entry t = e.getValue();
            String expected = e.getKey().endsWith("/q8") ? "int8" : "float32";
            if (!t.dtype.equals(expected)) {
                throw new ManifestException(FILE + ": '" + e.getKey() + "' is " + t.dtype + ", expected " + expected
                        + "; re-run android-assets");
            }
            long end = t.offset + (long) t.itemSize() * t.elements();
            if (t.offset < 0 || end > this.data.capacity()) {
                throw new ManifestException(FILE + ": '" + e.getKey() + "' ends at byte " + end + " but the file has "
                        + this.data.capacity() + "; the file is truncated, re-run android-assets");
            }
        }
    }

    public Entry entry(String name) {
        return index.get(name);
    }

    /** The int8 values of one layer's bases, [K, *S] flat (absolute get(i) from 0). */
    public ByteBuffer q8(String layer) {
        return slice(layer + "/q8");
    }

    /** One layer's per-basis, per-channel scales [K, C]. */
    public FloatBuffer scales(String layer) {
        return slice(layer + "/scales").asFloatBuffer();
    }

    /** A float32 tensor (scales or bias) by its full name. */
    public FloatBuffer floats(String name) {
        return slice(name).asFloatBuffer();
    }

    private ByteBuffer slice(String name) {
        Entry e = index.get(name);
        if (e == null) throw new ManifestException(FILE + ": no tensor '" + name + "'; re-run android-assets");
        ByteBuffer b = data.duplicate();
        b.position((int) e.offset);
        b.limit((int) (e.offset + (long) e.itemSize() * e.elements()));
        return b.slice().order(ByteOrder.LITTLE_ENDIAN);
    }

    static Map<String, Entry> index(JsonObject tensors) {
        Map<String, Entry> out = new LinkedHashMap<>();
        for (Map.Entry<String, JsonElement> e : tensors.entrySet()) {
            JsonObject t = e.getValue().getAsJsonObject();
            out.put(e.getKey(), new Entry(t.get("offset").getAsLong(), Manifest.ints(t.getAsJsonArray("shape")),
                    t.get("dtype").getAsString()));
        }
        return Collections.unmodifiableMap(out);
    }
}
