package dev.basisnet.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.FileNotFoundException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.junit.jupiter.api.Test;

/** Bad input at start-up: assets, schema, accelerators; and the defaults a phone starts with. */
class StartupTest {
    static final Set<Placement.Processor> CPU_ONLY = EnumSet.of(Placement.Processor.CPU);
    static final Set<Placement.Processor> WITH_GPU = EnumSet.of(Placement.Processor.CPU, Placement.Processor.GPU);

    /** An in-memory asset folder. */
    static final class Folder implements AssetCheck.Source {
        final Map<String, byte[]> files = new HashMap<>();

        @Override
        public InputStream open(String name) throws FileNotFoundException {
            byte[] b = files.get(name);
            if (b == null) throw new FileNotFoundException(name);
            return new ByteArrayInputStream(b);
        }

        @Override
        public String describe(String name) {
            return "assets/basisnet/" + name;
        }
    }

    static String sha(byte[] b) throws Exception {
        StringBuilder s = new StringBuilder();
        for (byte x : MessageDigest.getInstance("SHA-256").digest(b)) s.append(String.format("%02x", x));
        return s.toString();
    }

    static final byte[] TABLE = "[]".getBytes(StandardCharsets.UTF_8);

    @Test
    void aTamperedPatchTableOrBasesFileIsRefused() throws Exception {
        for (String name : new String[] {"specialist_patches.json", "specialist_bases.bin"}) {
            Object[] e = export();
            ((Folder) e[1]).files.put(name, "[{}]".getBytes(StandardCharsets.UTF_8));
            ManifestException x = assertThrows(ManifestException.class,
                    () -> AssetCheck.verify((Manifest) e[0], (Folder) e[1]));
            assertTrue(x.getMessage().startsWith("assets/basisnet/" + name + ": sha256"), x.getMessage());
        }
    }

    /** The test manifest with real digests of its small files, and the folder holding them. */
    static Object[] export() throws Exception {
        byte[] lm = "lightweight bytes".getBytes(StandardCharsets.UTF_8);
        byte[] sp = "specialist bytes".getBytes(StandardCharsets.UTF_8);
        String json = ManifestTest.MANIFEST.replace("\"sha256\": \"ab\"", "\"sha256\": \"" + sha(lm) + "\"")
                .replace("\"sha256\": \"cd\"", "\"sha256\": \"" + sha(sp) + "\"")
                .replace("\"patch_table_sha256\": \"ef\"", "\"patch_table_sha256\": \"" + sha(TABLE) + "\"")
                .replace("\"sha256\": \"01\"", "\"sha256\": \"" + sha(new byte[24]) + "\"");
        Folder f = new Folder();
        f.files.put("lightweight.tflite", lm);
        f.files.put("specialist_presynth.tflite", sp);
        f.files.put("specialist_patches.json", TABLE);
        f.files.put("specialist_bases.bin", new byte[24]);
        return new Object[] {Manifest.parse(json), f};
    }

    @Test
    void aCompleteExportPasses() throws Exception {
        Object[] e = export();
        AssetCheck.verify((Manifest) e[0], (Folder) e[1]);
    }

    @Test
    void aMissingAssetIsNamedWithTheFix() throws Exception {
        Object[] e = export();
        ((Folder) e[1]).files.remove("specialist_bases.bin");
        ManifestException x = assertThrows(ManifestException.class, () -> AssetCheck.verify((Manifest) e[0], (Folder) e[1]));
        assertTrue(x.getMessage().startsWith("assets/basisnet/specialist_bases.bin: missing"), x.getMessage());
        assertTrue(x.getMessage().contains("basisnet-deploy android-assets"), x.getMessage());
    }

    @Test
    void aTamperedOrForeignAssetFailsItsSha256() throws Exception {
        Object[] e = export();
        ((Folder) e[1]).files.put("lightweight.tflite", "lightweight bytez".getBytes(StandardCharsets.UTF_8));
        ManifestException x = assertThrows(ManifestException.class, () -> AssetCheck.verify((Manifest) e[0], (Folder) e[1]));
        assertTrue(x.getMessage().startsWith("assets/basisnet/lightweight.tflite: sha256"), x.getMessage());
        assertTrue(x.getMessage().contains("another export"), x.getMessage());
    }

    @Test
    void anOnnxExportIsRefused() throws Exception {
        Object[] e = export();
        Manifest onnx = Manifest.parse(ManifestTest.MANIFEST.replace("\"target\": \"tflite\"", "\"target\": \"onnx\""));
        ManifestException x = assertThrows(ManifestException.class, () -> AssetCheck.verify(onnx, (Folder) e[1]));
        assertTrue(x.getMessage().contains("a onnx export"), x.getMessage());
    }

    @Test
    void aNewerSchemaSaysToUpdateTheApp() {
        ManifestException x = assertThrows(ManifestException.class,
                () -> Manifest.parse(ManifestTest.MANIFEST.replace("\"schema_version\": 1", "\"schema_version\": 2")));
        assertTrue(x.getMessage().contains("newer basisnet-deploy; update the app"), x.getMessage());
    }

    @Test
    void aMissingGpuFallsBackToTheCpuAndSaysWhy() throws Exception {
        List<Placement.Processor> tried = new ArrayList<>();
        Placement<String> p = Placement.open(Placement.Processor.GPU, CPU_ONLY, proc -> {
            tried.add(proc);
            return "model on " + proc;
        });
        assertEquals(List.of(Placement.Processor.CPU), tried, "must not even try a GPU the device lacks");
        assertEquals(Placement.Processor.CPU, p.actual);
        assertEquals("model on CPU", p.model);
        assertTrue(p.label().startsWith("CPU (XNNPACK), GPU unavailable: this device has no GPU"), p.label());
    }

    @Test
    void aGpuThatRejectsTheModelFallsBackToTheCpu() throws Exception {
        Placement<String> p = Placement.open(Placement.Processor.GPU, WITH_GPU, proc -> {
            if (proc == Placement.Processor.GPU) throw new IllegalStateException("unsupported op CUSTOM");
            return "cpu model";
        });
        assertEquals("cpu model", p.model);
        assertEquals("CPU (XNNPACK), GPU unavailable: it rejected the model (unsupported op CUSTOM)", p.label());
    }

    @Test
    void theWantedProcessorIsUsedWhenItWorks() throws Exception {
        Placement<String> p = Placement.open(Placement.Processor.GPU, WITH_GPU, proc -> "on " + proc);
        assertEquals("on GPU", p.model);
        assertNull(p.fallbackReason);
        assertEquals("GPU", p.label());
    }

    @Test
    void aCpuFailureIsNotHidden() {
        assertThrows(IllegalStateException.class, () -> Placement.open(Placement.Processor.GPU, CPU_ONLY, proc -> {
            throw new IllegalStateException("corrupt model");
        }));
    }

    @Test
    void phoneDefaults() {
        Manifest presynthOnly = Manifest.parse(ManifestTest.MANIFEST);
        DemoSettings cpu = DemoSettings.defaults(presynthOnly, CPU_ONLY);
        assertEquals(DemoSettings.Form.PRESYNTH, cpu.form);
        assertEquals(Placement.Processor.CPU, cpu.specialistProcessor);
        assertEquals(TwoStagePipeline.Mode.PIPELINED, cpu.mode);
        assertEquals(0.75f, cpu.threshold);
        assertTrue(cpu.driftTolerance > 0, "tolerance 0 rebuilds the specialist on nearly every frame");
        DemoSettings gpu = DemoSettings.defaults(presynthOnly, WITH_GPU);
        assertEquals(Placement.Processor.GPU, gpu.specialistProcessor);
        assertEquals(DemoSettings.Form.PRESYNTH, gpu.form, "only form present");
    }

    @Test
    void onAGpuTheCoefficientFormIsPreferred() {
        String both = ManifestTest.MANIFEST.replace("\"artifacts\": {",
                "\"artifacts\": {\"specialist_coefficient\": {\"file\": \"c.tflite\", \"sha256\": \"ef\", \"quantization\": \"float32\","
                        + " \"inputs\": [], \"outputs\": []},");
        Manifest m = Manifest.parse(both);
        assertEquals(List.of(DemoSettings.Form.PRESYNTH, DemoSettings.Form.COEFFICIENT), DemoSettings.forms(m));
        assertEquals(DemoSettings.Form.COEFFICIENT, DemoSettings.defaults(m, WITH_GPU).form);
        assertEquals(DemoSettings.Form.PRESYNTH, DemoSettings.defaults(m, CPU_ONLY).form);
    }

    /** Camera noise: coefficients jitter by up to 0.01 around one value, frame after frame. */
    static int rebuildsOver100NoisyFrames(ResynthesisPolicy policy) {
        float[][] current = null;
        int uses = 0, rebuilds = 0;
        java.util.Random noise = new java.util.Random(1);
        for (int i = 0; i < 100; i++) {
            float[][] c = {{0.3f + 0.01f * noise.nextFloat(), 0.7f - 0.01f * noise.nextFloat()}};
            if (policy.needed(current, c, uses)) {
                current = c;
                uses = 0;
                rebuilds++;
            }
            uses++;
        }
        return rebuilds;
    }

    @Test
    void theDefaultDriftToleranceDoesNotRebuildPerFrame() {
        DemoSettings d = DemoSettings.defaults(Manifest.parse(ManifestTest.MANIFEST), WITH_GPU);
        assertEquals(1, rebuildsOver100NoisyFrames(d.policy()));
        assertEquals(100, rebuildsOver100NoisyFrames(d.withDriftTolerance(0).policy()), "the old exact default");
    }

    @Test
    void statsCountRebuildsAndExits() {
        PipelineStats s = new PipelineStats(10);
        s.add(new FrameResult(0, 1, 0.9f, "lightweight", 1, 0, 0, 2, null), 0.0);
        s.add(new FrameResult(1, 1, 0.6f, "specialist", 1, 3, 20, 25, null), 0.1);
        s.add(new FrameResult(2, 1, 0.6f, "specialist", 1, 3, 0, 5, null), 0.2);
        s.add(new FrameResult(3, -1, 0f, "failed", 1, 0, 0, 2, new RuntimeException("x")), 0.3);
        PipelineStats.Snapshot snap = s.snapshot();
        assertEquals(3, snap.frames);
        assertEquals(1, snap.failures);
        assertEquals(1.0 / 3, snap.exitRate, 1e-9);
        assertEquals(1, snap.resyntheses);
        assertEquals(0.5, snap.resynthesisRate, 1e-9);
        assertEquals(20, snap.synthesisMs, 1e-9);
        assertEquals(10, snap.framesPerSecond, 1e-9);
    }
}
