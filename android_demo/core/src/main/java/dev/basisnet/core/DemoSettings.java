package dev.basisnet.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Set;

/**
 * What the user can change while the camera runs, immutable: the specialist's form and
 * processor, pipelined or sequential, the early-exit threshold and the pre-synthesized form's
 * drift tolerance. The lightweight model always runs on the CPU.
 */
public final class DemoSettings {
    public enum Form {
        PRESYNTH("Pre-synthesized", "specialist_presynth"),
        COEFFICIENT("Coefficient-input", "specialist_coefficient");

        public final String label;
        public final String role;

        Form(String label, String role) {
            this.label = label;
            this.role = role;
        }
    }

    /**
     * Max-abs coefficient drift a pre-synthesized model is reused for. Tolerance 0 (exact) rebuilds
     * the model, and on a GPU recompiles it, for nearly every camera frame, since camera noise moves
     * the coefficients a little on every frame; the overlay shows this value and the rebuild rate.
     */
    public static final double DEFAULT_DRIFT_TOLERANCE = 0.05;

    public final Form form;
    public final Placement.Processor specialistProcessor;
    public final TwoStagePipeline.Mode mode;
    public final Float threshold; // null: never exit early
    public final double driftTolerance;

    public DemoSettings(Form form, Placement.Processor specialistProcessor, TwoStagePipeline.Mode mode,
                        Float threshold, double driftTolerance) {
        if (driftTolerance < 0) throw new IllegalArgumentException("driftTolerance must be >= 0");
        this.form = form;
        this.specialistProcessor = specialistProcessor;
        this.mode = mode;
        this.threshold = threshold;
        this.driftTolerance = driftTolerance;
    }

    /**
     * A phone's defaults: the specialist on the GPU when the device has one, in the form that does
     * not rebuild per frame there (coefficient-input: one model, coefficients as an input), else
     * pre-synthesized with {@link #DEFAULT_DRIFT_TOLERANCE}; pipelined; the calibrated threshold.
     */
    public static DemoSettings defaults(Manifest manifest, Set<Placement.Processor> available) {
        List<Form> forms = forms(manifest);
        if (forms.isEmpty()) {
            throw new ManifestException("manifest.json: no specialist artifact (specialist_presynth or "
                    + "specialist_coefficient); export with --specialist all and " + AssetCheck.FIX);
        }
        boolean gpu = available.contains(Placement.Processor.GPU);
        Form form = gpu && forms.contains(Form.COEFFICIENT) ? Form.COEFFICIENT
                : forms.contains(Form.PRESYNTH) ? Form.PRESYNTH : Form.COEFFICIENT;
        Placement.Processor processor = gpu ? Placement.Processor.GPU : Placement.Processor.CPU;
        return new DemoSettings(form, processor, TwoStagePipeline.Mode.PIPELINED, manifest.threshold,
                DEFAULT_DRIFT_TOLERANCE);
    }

    /** The specialist forms this export has, in the order the controls list them. */
    public static List<Form> forms(Manifest manifest) {
        List<Form> out = new ArrayList<>();
        for (Form f : Form.values()) if (manifest.hasArtifact(f.role)) out.add(f);
        return Collections.unmodifiableList(out);
    }

    /** The re-synthesis rule for the pre-synthesized form: drift only, no frame limit. */
    public ResynthesisPolicy policy() {
        return new ResynthesisPolicy(driftTolerance, 0);
    }

    public DemoSettings withForm(Form f) {
        return new DemoSettings(f, specialistProcessor, mode, threshold, driftTolerance);
    }

    public DemoSettings withProcessor(Placement.Processor p) {
        return new DemoSettings(form, p, mode, threshold, driftTolerance);
    }

    public DemoSettings withMode(TwoStagePipeline.Mode m) {
        return new DemoSettings(form, specialistProcessor, m, threshold, driftTolerance);
    }

    public DemoSettings withThreshold(Float t) {
        return new DemoSettings(form, specialistProcessor, mode, t, driftTolerance);
    }

    public DemoSettings withDriftTolerance(double d) {
        return new DemoSettings(form, specialistProcessor, mode, threshold, d);
    }

    @Override
    public String toString() {
        return form.label + " on " + specialistProcessor.label + ", " + mode + ", threshold " + threshold
                + ", drift tolerance " + driftTolerance;
    }
}
