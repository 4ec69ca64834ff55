package dev.basisnet.core;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

import java.awt.image.BufferedImage;
import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;

import javax.imageio.ImageIO;

/**
 * Runs the core on golden inputs that the Python test suite wrote, and writes what it computes
 * for Python to compare (tests/test_android_core.py). JVM-only: ImageIO stands in for the
 * camera, the rest is the code the app runs.
 *
 * <p>Usage: {@code GoldenTool jobs.json}; see the Python test for the job format.
 */
public final class GoldenTool {
    public static void main(String[] args) throws IOException {
        JsonObject jobs = JsonParser.parseString(Files.readString(Path.of(args[0]))).getAsJsonObject();
        if (jobs.has("preprocess")) {
            for (JsonElement e : jobs.getAsJsonArray("preprocess")) preprocess(e.getAsJsonObject());
        }
        if (jobs.has("synthesize")) { // one job, or a list of them (float and compact bases)
            JsonElement all = jobs.get("synthesize");
            for (JsonElement e : all.isJsonArray() ? all.getAsJsonArray() : List.of(all)) {
                JsonObject s = e.getAsJsonObject();
                synthesize(Path.of(s.get("assets").getAsString()), s);
            }
        }
        if (jobs.has("decide")) decide(jobs.getAsJsonObject("decide"));
    }

    private static void preprocess(JsonObject job) throws IOException {
        BufferedImage img = ImageIO.read(new File(job.get("image").getAsString()));
        int w = img.getWidth(), h = img.getHeight();
        int[] argb = img.getRGB(0, 0, w, h, null, 0, w);
        Preprocessing pre = new Preprocessing(
                Preprocessing.Resize.valueOf(job.get("resize").getAsString().toUpperCase()),
                job.get("crop_fraction").getAsDouble(), job.get("low").getAsDouble(), job.get("high").getAsDouble(),
                Preprocessing.Interpolation.valueOf(job.get("interpolation").getAsString().toUpperCase()), 0, 0);
        float[] t = new Preprocessor(pre).tensor(argb, w, h, job.get("resolution").getAsInt());
        writeFloats(Path.of(job.get("out").getAsString()), t);
        if (job.has("quantized_out")) {
            byte[] q = Preprocessor.quantize(t, job.get("scale").getAsFloat(), job.get("zero_point").getAsInt(), false);
            Files.write(Path.of(job.get("quantized_out").getAsString()), q);
        }
    }

    private static void synthesize(Path assets, JsonObject job) throws IOException {
        Manifest m = Manifest.parse(Files.readString(assets.resolve("manifest.json")));
        Artifact presynth = m.artifact("specialist_presynth");
        byte[] template = Files.readAllBytes(assets.resolve(presynth.file));
        List<Patch> table = Patch.parseTable(Files.readString(assets.resolve(m.patchTableFile)));
        // "compact": true synthesizes from specialist_bases_int8.bin, else from the float32 bases.
        boolean compact = job.has("compact") && job.get("compact").getAsBoolean();
        Synthesizer s = compact
                ? new Synthesizer(template, table, new CompactBases(map(assets.resolve(m.basesInt8RawFile)), m.basesInt8RawIndex), m.bases)
                : new Synthesizer(template, table, new BasesFile(map(assets.resolve(m.basesRawFile)), m.basesRawIndex), m.bases);
        if (s.compact() != compact) throw new IllegalStateException("wrong synthesizer");
        for (JsonElement e : job.getAsJsonArray("sets")) {
            JsonObject set = e.getAsJsonObject();
            float[] flat = readFloats(Path.of(set.get("coefficients").getAsString()));
            Files.write(Path.of(set.get("out").getAsString()), s.synthesize(m.coefficientRows(flat)));
        }
    }

    private static ByteBuffer map(Path file) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            return ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size());
        }
    }

    private static void decide(JsonObject job) throws IOException {
        float[] logits = readFloats(Path.of(job.get("logits").getAsString()));
        int classes = job.get("classes").getAsInt();
        Float threshold = job.get("threshold").getAsFloat();
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < logits.length / classes; i++) {
            float[] row = new float[classes];
            System.arraycopy(logits, i * classes, row, 0, classes);
            float[] p = EarlyExit.softmax(row);
            int label = EarlyExit.argmax(p);
            out.append(label).append(' ').append(EarlyExit.exits(p[label], threshold) ? 1 : 0).append(' ')
                    .append(p[label]).append('\n');
        }
        Files.writeString(Path.of(job.get("out").getAsString()), out);
    }

    private static float[] readFloats(Path p) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(p)).order(ByteOrder.LITTLE_ENDIAN);
        float[] f = new float[b.remaining() / 4];
        b.asFloatBuffer().get(f);
        return f;
    }

    private static void writeFloats(Path p, float[] values) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(values);
        Files.write(p, b.array());
    }
}
