package dev.basisnet.core;

import static dev.basisnet.core.StartupTest.CPU_ONLY;
import static dev.basisnet.core.StartupTest.WITH_GPU;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.Test;

/**
 * The export's GPU verdicts (manifest.json, artifacts.ROLE.gpu) decide where the specialist
 * runs: float16 exports go on the GPU in the coefficient-input form; static int8 (miscomputed)
 * and weight-only int8 templates (refused) stay on the CPU with the reason and the fix; older
 * manifests without verdicts behave as before.
 */
class GpuPlacementTest {
    static final String ADAPTER = "SwiftShader Device (Subzero) (CPU / Software)";
    static final String GPU_COEFFICIENT = "GPU (coefficient-input: one compiled model for every frame)";
    static final String FULL_INT8_CPU = "CPU (XNNPACK): this export's specialist_presynth miscomputes on LiteRT's GPU "
            + "(int8 activations); export with --quantize float16 for the GPU";

    /** A verdict measured on a GPU, as basisnet_deploy.runtime.gpu.GpuVerdict.to_json() writes it. */
    static String measured(String status, String reason, Double maxRel) {
        return "{\"artifact\": \"/tmp/x.tflite\", \"status\": \"" + status + "\", \"adapter\": \"" + ADAPTER + "\","
                + " \"reason\": " + (reason == null ? "null" : "\"" + reason + "\"") + ", \"unsupported_ops\": [],"
                + " \"max_rel\": " + (maxRel == null ? "null" : maxRel) + ", \"top1_agreement\": null, \"probes\": 3,"
                + " \"compile_ms\": 1520.5, \"source\": \"LiteRT GPU accelerator (compiled and run, compared with the CPU)\"}";
    }

    /** No GPU at export: the guess from the artifact's kind. */
    static String guess(String reason) {
        return "{\"artifact\": \"/tmp/x.tflite\", \"status\": \"static-guess\", \"adapter\": null, \"reason\": \"" + reason + "\","
                + " \"unsupported_ops\": [], \"max_rel\": null, \"top1_agreement\": null, \"probes\": 0, \"compile_ms\": null,"
                + " \"source\": \"static guess from the artifact's kind; no GPU here to run it\"}";
    }

    static final String RUNS = measured("runs", null, 1.2e-3);
    static final String MISCOMPUTES = measured("miscomputes",
            "a shader failed: Validation error: Invalid ComputePipeline", null);
    static final String REFUSED_KERNEL = measured("refused", "Failed to initialize kernel.", null);

    /**
     * ManifestTest.MANIFEST with each artifact's quantization and gpu entry (null: no gpu key, an
     * older manifest) and, when {@code coefficientQ} is not null, a coefficient-input specialist.
     */
    static Manifest manifest(String lmQ, String lmGpu, String presynthQ, String presynthGpu,
                             String coefficientQ, String coefficientGpu) {
        String json = ManifestTest.MANIFEST
                .replace("\"sha256\": \"ab\", \"quantization\": \"int8\",", "\"sha256\": \"ab\", " + entry(lmQ, lmGpu))
                .replace("\"sha256\": \"cd\", \"quantization\": \"int8\",", "\"sha256\": \"cd\", " + entry(presynthQ, presynthGpu));
        if (coefficientQ != null) {
            json = json.replace("\"artifacts\": {", "\"artifacts\": {\"specialist_coefficient\": {\"file\": \"c.tflite\","
                    + " \"sha256\": \"ef\", " + entry(coefficientQ, coefficientGpu) + " \"inputs\": [], \"outputs\": []},");
        }
        return Manifest.parse(json);
    }

    private static String entry(String quantization, String gpu) {
        return "\"quantization\": \"" + quantization + "\"," + (gpu == null ? "" : " \"gpu\": " + gpu + ",");
    }

    // ---- parsing ---------------------------------------------------------------------------

    @Test
    void theVerdictAndQuantizationAreReadTyped() {
        Manifest m = manifest("int8", MISCOMPUTES, "weight_only", guess("refused (int8 weights behind DEQUANTIZE: "
                + "'Failed to initialize kernel')"), "dynamic", RUNS);
        Artifact lm = m.artifact("lightweight");
        assertEquals(Artifact.Quantization.INT8, lm.quantization);
        assertEquals(GpuVerdict.Status.MISCOMPUTES, lm.gpu.status);
        assertEquals("a shader failed: Validation error: Invalid ComputePipeline", lm.gpu.reason);
        assertEquals(ADAPTER, lm.gpu.adapter);
        assertFalse(lm.gpu.guessed);
        assertTrue(lm.gpu.blocksGpu());

        Artifact template = m.artifact("specialist_presynth");
        assertEquals(Artifact.Quantization.WEIGHT_ONLY, template.quantization);
        assertEquals(GpuVerdict.Status.REFUSED, template.gpu.status, "a static guess's reason starts with the outcome");
        assertTrue(template.gpu.guessed);
        assertNull(template.gpu.adapter);
        assertEquals("int8 weights behind DEQUANTIZE: 'Failed to initialize kernel'", template.gpu.detail());

        Artifact coefficient = m.artifact("specialist_coefficient");
        assertEquals(Artifact.Quantization.DYNAMIC, coefficient.quantization);
        assertEquals(GpuVerdict.Status.RUNS, coefficient.gpu.status);
        assertEquals(1.2e-3, coefficient.gpu.maxRel, 1e-12);
        assertFalse(coefficient.gpu.blocksGpu());
        assertNull(coefficient.gpuProblem());
    }

    @Test
    void staticGuessesFollowTheirReasonsFirstWord() {
        assertEquals(GpuVerdict.Status.RUNS, guessed("runs (float16 weights: the accelerator's native form)"));
        assertEquals(GpuVerdict.Status.MISCOMPUTES, guessed("miscomputes (int8 activations: the accelerator generates "
                + "a shader the driver rejects, and the invalid pipeline returns garbage)"));
        assertEquals(GpuVerdict.Status.REFUSED, guessed("refused (int8 weights behind DEQUANTIZE)"));
        assertEquals(GpuVerdict.Status.UNKNOWN, guessed("something else"));
    }

    private static GpuVerdict.Status guessed(String reason) {
        return manifest("float16", null, "float16", guess(reason), null, null).artifact("specialist_presynth").gpu.status;
    }

    @Test
    void noVerdictOrAnUnusableOneIsUnknown() {
        assertEquals(GpuVerdict.Status.UNKNOWN, presynthGpu(null).status, "no gpu key: an older manifest");
        assertEquals(GpuVerdict.Status.UNKNOWN, presynthGpu(measured("no-device", "no GPU device", null)).status);
        assertEquals(GpuVerdict.Status.UNKNOWN, presynthGpu(measured("sideways", null, null)).status,
                "an unknown status is not a start-up failure");
        assertEquals(GpuVerdict.Status.UNKNOWN, presynthGpu("{\"status\": null, \"reason\": \"onnx\"}").status);
    }

    private static GpuVerdict presynthGpu(String gpu) {
        return manifest("float32", null, "float32", gpu, null, null).artifact("specialist_presynth").gpu;
    }

    // ---- the defaults ----------------------------------------------------------------------

    @Test
    void aFloat16ExportPutsTheCoefficientInputSpecialistOnTheGpu() {
        for (String verdict : new String[] {RUNS, guess("runs (float16 weights: the accelerator's native form)")}) {
            Manifest m = manifest("float16", verdict, "float16", verdict, "float16", verdict);
            DemoSettings d = DemoSettings.defaults(m, WITH_GPU);
            assertEquals(Placement.Processor.GPU, d.specialistProcessor);
            assertEquals(DemoSettings.Form.COEFFICIENT, d.form, "one compiled model for every frame");
            assertEquals(GPU_COEFFICIENT, d.label(m, WITH_GPU));
            DemoSettings cpu = DemoSettings.defaults(m, CPU_ONLY);
            assertEquals(Placement.Processor.CPU, cpu.specialistProcessor);
            assertEquals(DemoSettings.Form.PRESYNTH, cpu.form);
            assertEquals("CPU (XNNPACK)", cpu.label(m, CPU_ONLY));
        }
    }

    @Test
    void aFloat16TemplateAloneRunsOnTheGpuAndSaysRebuildsRecompile() {
        Manifest m = manifest("float16", RUNS, "float16", RUNS, null, null);
        DemoSettings d = DemoSettings.defaults(m, WITH_GPU);
        assertEquals(Placement.Processor.GPU, d.specialistProcessor);
        assertEquals(DemoSettings.Form.PRESYNTH, d.form);
        assertEquals("GPU (pre-synthesized: each re-synthesis is a new GPU compile)", d.label(m, WITH_GPU));
    }

    /** The full int8 recipe with --coefficient-int8 fakequant: every specialist has int8 activations. */
    @Test
    void aFullInt8ExportStaysOnTheCpuWithTheReasonAndTheFix() {
        Manifest m = manifest("int8", MISCOMPUTES, "int8", MISCOMPUTES, "int8", MISCOMPUTES);
        DemoSettings d = DemoSettings.defaults(m, WITH_GPU);
        assertEquals(Placement.Processor.CPU, d.specialistProcessor, "int8 activations give garbage on the GPU");
        assertEquals(DemoSettings.Form.PRESYNTH, d.form);
        assertEquals(FULL_INT8_CPU, d.label(m, WITH_GPU));
        assertEquals("CPU (XNNPACK)", DemoSettings.defaults(m, CPU_ONLY).label(m, CPU_ONLY), "no GPU: nothing to explain");
    }

    @Test
    void aFullInt8ExportGuessedWithoutAGpuSaysItWouldMiscompute() {
        String g = guess("miscomputes (int8 activations: the accelerator generates a shader the driver rejects, "
                + "and the invalid pipeline returns garbage)");
        Manifest m = manifest("int8", g, "int8", g, null, null);
        DemoSettings d = DemoSettings.defaults(m, WITH_GPU);
        assertEquals(Placement.Processor.CPU, d.specialistProcessor);
        assertEquals("CPU (XNNPACK): this export's specialist_presynth would miscompute on LiteRT's GPU "
                + "(int8 activations); export with --quantize float16 for the GPU", d.label(m, WITH_GPU));
    }

    /** The full int8 recipe with the default --coefficient-int8 dynamic (and the fidelity recipe's specialist). */
    @Test
    void aDynamicRangeCoefficientSpecialistRunsOnTheGpuBesideAnInt8Template() {
        Manifest m = manifest("int8", MISCOMPUTES, "int8", MISCOMPUTES, "dynamic", RUNS);
        DemoSettings d = DemoSettings.defaults(m, WITH_GPU);
        assertEquals(Placement.Processor.GPU, d.specialistProcessor);
        assertEquals(DemoSettings.Form.COEFFICIENT, d.form);
        assertEquals(GPU_COEFFICIENT, d.label(m, WITH_GPU));
        assertEquals(FULL_INT8_CPU, d.withForm(DemoSettings.Form.PRESYNTH).label(m, WITH_GPU),
                "switching to the template on the GPU says why it runs on the CPU instead");
    }

    static final String WEIGHT_ONLY_CPU = "CPU (XNNPACK): this export's specialist_presynth is refused by LiteRT's GPU "
            + "(int8 weights behind DEQUANTIZE); export with --quantize float16 for the GPU";

    /** The fidelity recipe's template (float32 LM), exported alone (--specialist presynth). */
    @Test
    void aWeightOnlyTemplateIsRefusedAndStaysOnTheCpu() {
        Manifest m = manifest("float32", RUNS, "weight_only", REFUSED_KERNEL, null, null);
        DemoSettings d = DemoSettings.defaults(m, WITH_GPU);
        assertEquals(Placement.Processor.CPU, d.specialistProcessor);
        assertEquals(DemoSettings.Form.PRESYNTH, d.form);
        assertEquals(WEIGHT_ONLY_CPU, d.label(m, WITH_GPU));
    }

    /** The fidelity recipe with both forms (make demo's export): the dynamic-range specialist on the GPU. */
    @Test
    void theFidelityExportRunsItsCoefficientSpecialistOnTheGpuNotItsTemplate() {
        Manifest m = manifest("float32", RUNS, "weight_only", REFUSED_KERNEL, "dynamic", RUNS);
        DemoSettings d = DemoSettings.defaults(m, WITH_GPU);
        assertEquals(Placement.Processor.GPU, d.specialistProcessor);
        assertEquals(DemoSettings.Form.COEFFICIENT, d.form);
        assertEquals(WEIGHT_ONLY_CPU, d.withForm(DemoSettings.Form.PRESYNTH).label(m, WITH_GPU));
    }

    @Test
    void aFloatArtifactTheGpuRefusesNamesTheGpusReasonNotTheFloat16Fix() {
        Manifest m = manifest("float32", RUNS, "float32",
                measured("refused", "not supported on the GPU: CUSTOM: custom op", null), null, null);
        String label = DemoSettings.defaults(m, WITH_GPU).label(m, WITH_GPU);
        assertEquals("CPU (XNNPACK): this export's specialist_presynth is refused by LiteRT's GPU (not supported on "
                + "the GPU: CUSTOM: custom op); `basisnet-deploy check EXPORT` on a machine with a GPU shows the details",
                label);
    }

    @Test
    void anOldManifestWithoutVerdictsBehavesAsBefore() {
        // gpu_compatibility came from a static analyzer that was wrong: it is not read.
        String wrong = "{\"compatible\": false, \"source\": \"tf.lite.experimental.Analyzer\"}";
        Manifest both = Manifest.parse(ManifestTest.MANIFEST
                .replace("\"sha256\": \"cd\",", "\"sha256\": \"cd\", \"gpu_compatibility\": " + wrong + ",")
                .replace("\"artifacts\": {", "\"artifacts\": {\"specialist_coefficient\": {\"file\": \"c.tflite\","
                        + " \"sha256\": \"ef\", \"quantization\": \"int8\", \"gpu_compatibility\": " + wrong + ","
                        + " \"inputs\": [], \"outputs\": []},"));
        assertEquals(GpuVerdict.Status.UNKNOWN, both.artifact("specialist_presynth").gpu.status);
        assertEquals(GpuVerdict.Status.UNKNOWN, both.artifact("specialist_coefficient").gpu.status);
        DemoSettings d = DemoSettings.defaults(both, WITH_GPU);
        assertEquals(Placement.Processor.GPU, d.specialistProcessor, "unknown: the GPU is tried, as before");
        assertEquals(DemoSettings.Form.COEFFICIENT, d.form);
        assertEquals(DemoSettings.Form.PRESYNTH, DemoSettings.defaults(both, CPU_ONLY).form);

        Manifest presynthOnly = Manifest.parse(ManifestTest.MANIFEST);
        DemoSettings p = DemoSettings.defaults(presynthOnly, WITH_GPU);
        assertEquals(Placement.Processor.GPU, p.specialistProcessor);
        assertEquals(DemoSettings.Form.PRESYNTH, p.form);
        assertNull(presynthOnly.artifact("specialist_presynth").gpuProblem());
    }

    // ---- opening: an explicit GPU pick ------------------------------------------------------

    @Test
    void pickingTheGpuForAnArtifactItMiscomputesOpensOnTheCpuWithoutTryingTheGpu() throws Exception {
        Manifest m = manifest("int8", MISCOMPUTES, "int8", MISCOMPUTES, "int8", MISCOMPUTES);
        DemoSettings picked = DemoSettings.defaults(m, WITH_GPU).withProcessor(Placement.Processor.GPU);
        assertEquals(FULL_INT8_CPU, picked.label(m, WITH_GPU));
        List<Placement.Processor> tried = new ArrayList<>();
        Placement<String> p = Placement.open(Placement.Processor.GPU, WITH_GPU, m.artifact("specialist_presynth"), proc -> {
            tried.add(proc);
            return "model on " + proc; // a GPU compile would succeed and return garbage at run time
        });
        assertEquals(List.of(Placement.Processor.CPU), tried, "the GPU compile must not even be tried");
        assertEquals(Placement.Processor.CPU, p.actual);
        assertEquals(Placement.Processor.GPU, p.wanted);
        assertEquals("model on CPU", p.model);
        assertEquals(FULL_INT8_CPU, p.label());
        assertTrue(p.fallbackReason.contains("miscomputes on LiteRT's GPU"), p.fallbackReason);
    }

    @Test
    void aRunnableArtifactOpensOnTheGpuWithTheFormInItsLabel() throws Exception {
        Manifest m = manifest("float16", RUNS, "float16", RUNS, "float16", RUNS);
        Placement<String> p = Placement.open(Placement.Processor.GPU, WITH_GPU, m.artifact("specialist_coefficient"),
                proc -> "on " + proc);
        assertEquals("on GPU", p.model);
        assertNull(p.fallbackReason);
        assertEquals(GPU_COEFFICIENT, p.label());
    }

    @Test
    void anUnknownArtifactIsTriedOnTheGpuAndAFailedCompileStillFallsBack() throws Exception {
        Artifact old = Manifest.parse(ManifestTest.MANIFEST).artifact("specialist_presynth");
        List<Placement.Processor> tried = new ArrayList<>();
        Placement<String> p = Placement.open(Placement.Processor.GPU, WITH_GPU, old, proc -> {
            tried.add(proc);
            if (proc == Placement.Processor.GPU) throw new IllegalStateException("Failed to initialize kernel.");
            return "cpu model";
        });
        assertEquals(List.of(Placement.Processor.GPU, Placement.Processor.CPU), tried);
        assertEquals("cpu model", p.model);
        assertEquals("CPU (XNNPACK), GPU unavailable: it rejected the model (Failed to initialize kernel.)", p.label());
    }

    @Test
    void aDeviceWithoutAGpuIsStillTheFirstReason() throws Exception {
        Manifest m = manifest("int8", MISCOMPUTES, "int8", MISCOMPUTES, null, null);
        Placement<String> p = Placement.open(Placement.Processor.GPU, CPU_ONLY, m.artifact("specialist_presynth"),
                proc -> "on " + proc);
        assertEquals("on CPU", p.model);
        assertTrue(p.label().startsWith("CPU (XNNPACK), GPU unavailable: this device has no GPU"), p.label());
    }
}
