package dev.basisnet.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class ManifestTest {
    static final String MANIFEST = "{\"schema_version\": 1, \"target\": \"tflite\", \"quantization\": \"int8\","
            + " \"labels\": [\"cat\", \"dog\"],"
            + " \"preprocessing\": {\"resize\": \"center_crop\", \"crop_fraction\": 0.875, \"input_range\": [-1.0, 1.0],"
            + "   \"interpolation\": \"bilinear\", \"lightweight_resolution\": 16, \"specialist_resolution\": 32},"
            + " \"coefficients\": {\"shape\": [2, 3], \"blocks\": [\"L8\", \"L9\"]},"
            + " \"cost\": {\"stages\": {\"lightweight\": {\"madds\": 10}, \"specialist\": {\"madds\": 90}}},"
            + " \"early_exit\": {\"threshold\": 0.75},"
            + " \"artifacts\": {"
            + "  \"lightweight\": {\"file\": \"lightweight.tflite\", \"sha256\": \"ab\", \"quantization\": \"int8\","
            + "    \"inputs\": [{\"name\": \"image\", \"dtype\": \"int8\", \"shape\": [1, 16, 16, 3],"
            + "                 \"quantization\": {\"scale\": 0.0078125, \"zero_point\": -1}}],"
            + "    \"outputs\": [{\"name\": \"logits\", \"dtype\": \"float32\", \"shape\": [1, 2], \"quantization\": null},"
            + "                  {\"name\": \"coefficients\", \"dtype\": \"float32\", \"shape\": [1, 2, 3], \"quantization\": null}]},"
            + "  \"specialist_presynth\": {\"file\": \"specialist_presynth.tflite\", \"sha256\": \"cd\", \"quantization\": \"int8\","
            + "    \"patch_table\": \"specialist_patches.json\", \"patch_table_sha256\": \"ef\", \"bases\": \"specialist_bases.npz\","
            + "    \"bases_raw\": {\"file\": \"specialist_bases.bin\", \"sha256\": \"01\", \"tensors\": {\"sp_L8_expand\": {\"offset\": 0, \"shape\": [3, 4, 1, 1, 2]}}},"
            + "    \"inputs\": [{\"name\": \"image\", \"dtype\": \"float32\", \"shape\": [1, 32, 32, 3], \"quantization\": null}],"
            + "    \"outputs\": [{\"name\": \"logits\", \"dtype\": \"float32\", \"shape\": [1, 2], \"quantization\": null}]}}}";

    @Test
    void parsesWhatTheExporterWrites() {
        Manifest m = Manifest.parse(MANIFEST);
        assertEquals("tflite", m.target);
        assertEquals(2, m.labels.size());
        assertEquals(Preprocessing.Resize.CENTER_CROP, m.preprocessing.resize);
        assertEquals(Preprocessing.Interpolation.BILINEAR, m.preprocessing.interpolation);
        assertEquals(32, m.preprocessing.specialistResolution);
        assertEquals(2, m.coefficientRows);
        assertEquals(3, m.bases);
        assertEquals(0.75f, m.threshold);
        assertEquals(10, m.lightweightMadds);
        TensorSpec image = m.artifact("lightweight").input("image");
        assertTrue(image.isQuantized());
        assertEquals(-1, image.zeroPoint);
        assertEquals(0.0078125f, image.scale);
        assertEquals("specialist_patches.json", m.patchTableFile);
        assertEquals("specialist_bases.bin", m.basesRawFile);
        assertEquals("ef", m.patchTableSha256);
        assertEquals("01", m.basesRawSha256);
        assertArrayEquals(new int[] {3, 4, 1, 1, 2}, m.basesRawIndex.get("sp_L8_expand").shape);
        float[][] rows = m.coefficientRows(new float[] {1, 2, 3, 4, 5, 6});
        assertArrayEquals(new float[] {4, 5, 6}, rows[1]);
    }

    @Test
    void noThresholdMeansNeverExit() {
        Manifest m = Manifest.parse(MANIFEST.replace("\"early_exit\": {\"threshold\": 0.75},", ""));
        assertNull(m.threshold);
        assertEquals(false, EarlyExit.exits(0.999f, m.threshold));
    }

    @Test
    void errorsNameTheFieldAndTheFix() {
        assertMessage(MANIFEST.replace("\"schema_version\": 1", "\"schema_version\": 7"), "schema_version 7");
        assertMessage(MANIFEST.replace("\"resize\": \"center_crop\",", ""), "preprocessing.resize is missing");
        assertMessage(MANIFEST.replace("\"bilinear\"", "\"lanczos\""), "preprocessing.interpolation 'lanczos'");
        assertMessage(MANIFEST.replace("[-1.0, 1.0]", "[1.0, -1.0]"), "input_range");
        assertMessage(MANIFEST.substring(0, 100), "not valid JSON");
        assertMessage("[1, 2]", "expected a JSON object");
        Manifest m = Manifest.parse(MANIFEST);
        ManifestException e = assertThrows(ManifestException.class, () -> m.artifact("specialist_coefficient"));
        assertTrue(e.getMessage().contains("--specialist all"), e.getMessage());
    }

    private static void assertMessage(String json, String expected) {
        ManifestException e = assertThrows(ManifestException.class, () -> Manifest.parse(json));
        assertTrue(e.getMessage().contains(expected), e.getMessage());
        assertTrue(e.getMessage().startsWith("manifest.json"), e.getMessage());
    }
}
