package dev.basisnet.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * specialist_bases.bin: the BN-folded bases as raw little-endian float32, written by
 * {@code basisnet-deploy android-assets} so the app can memory-map them (store the asset
 * uncompressed) instead of holding K copies of the non-shared weights on the Java heap.
 * The manifest's {@code bases_raw.tensors} maps each name to its byte offset and shape.
 */
public final class BasesFile {
    public static final class Entry {
        public final long offset;
        public final int[] shape;

        Entry(long offset, int[] shape) {
            this.offset = offset;
            this.shape = shape;
        }

        public int elements() {
            int n = 1;
            for (int d : shape) n *= d;
            return n;
        }
    }

    private final ByteBuffer data;
    private final Map<String, Entry> index;

    public BasesFile(ByteBuffer data, Map<String, Entry> index) {
        this.data = data.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        this.index = index;
        for (Map.Entry<String, Entry> e : index.entrySet()) {
            long end = e.getValue().offset + 4L * e.getValue().elements();
            if (end > this.data.capacity()) {
                throw new ManifestException("specialist_bases.bin: '" + e.getKey() + "' ends at byte " + end
                        + " but the file has " + this.data.capacity() + "; the file is truncated, re-run android-assets");
            }
        }
    }

    /** A read-only float view of one tensor ([K, ...] for a layer, [C] for a bias). */
    public FloatBuffer tensor(String name) {
        Entry e = index.get(name);
        if (e == null) {
            throw new ManifestException("specialist_bases.bin: no tensor '" + name + "'; re-run android-assets");
        }
        ByteBuffer b = data.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        b.position((int) e.offset);
        b.limit((int) (e.offset + 4L * e.elements()));
        return b.slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
    }

    public Entry entry(String name) {
        return index.get(name);
    }

    static Map<String, Entry> index(JsonObject tensors) {
        Map<String, Entry> out = new LinkedHashMap<>();
        for (Map.Entry<String, JsonElement> e : tensors.entrySet()) {
            JsonObject t = e.getValue().getAsJsonObject();
            JsonArray dims = t.getAsJsonArray("shape");
            int[] shape = Manifest.ints(dims);
            out.put(e.getKey(), new Entry(t.get("offset").getAsLong(), shape));
        }
        return Collections.unmodifiableMap(out);
    }
}
