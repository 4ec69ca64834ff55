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
     * A phone's defaults: the specialist on the GPU only when the device has one and the export
     * says the form's artifact runs there, preferring the coefficient-input form (one compiled
     * model for every frame; a re-synthesized template is a new GPU compile). An artifact of
     * unknown verdict (an older manifest) is tried on the GPU as before: a failed compile falls
     * back to the CPU ({@link Placement#open}). When every specialist the export has is known to
     * be refused or miscomputed by the GPU (static int8, weight-only int8 templates), or the
     * device has no GPU: the pre-synthesized form (else coefficient-input) on the CPU, with
     * {@link #DEFAULT_DRIFT_TOLERANCE}; {@link #label} says why. Pipelined; the calibrated threshold.
     */
    public static DemoSettings defaults(Manifest manifest, Set<Placement.Processor> available) {
        List<Form> forms = forms(manifest);
        if (forms.isEmpty()) {
            throw new ManifestException("manifest.json: no specialist artifact (specialist_presynth or "
                    + "specialist_coefficient); export with --specialist all and " + AssetCheck.FIX);
        }
        Form form = null;
        Placement.Processor processor = Placement.Processor.CPU;
        if (available.contains(Placement.Processor.GPU)) {
            form = gpuForm(manifest, forms, GpuVerdict.Status.RUNS);
            if (form == null) form = gpuForm(manifest, forms, GpuVerdict.Status.UNKNOWN);
            if (form != null) processor = Placement.Processor.GPU;
        }
        if (form == null) form = forms.contains(Form.PRESYNTH) ? Form.PRESYNTH : Form.COEFFICIENT;
        return new DemoSettings(form, processor, TwoStagePipeline.Mode.PIPELINED, manifest.threshold,
                DEFAULT_DRIFT_TOLERANCE);
    }

    /** The first form, coefficient-input first, whose artifact has GPU verdict {@code status}; null if none. */
    private static Form gpuForm(Manifest manifest, List<Form> forms, GpuVerdict.Status status) {
        for (Form f : new Form[] {Form.COEFFICIENT, Form.PRESYNTH}) {
            if (forms.contains(f) && manifest.artifact(f.role).gpu.status == status) return f;
        }
        return null;
    }

    /**
     * Where the specialist will run with these settings on this device, and why, in one line (the
     * label {@link Placement#open} gives the running stage when the compile succeeds): e.g.
     * "GPU (coefficient-input: one compiled model for every frame)", or "CPU (XNNPACK): this
     * export's specialist_presynth miscomputes on LiteRT's GPU (int8 activations); export with
     * --quantize float16 for the GPU".
     */
    public String label(Manifest manifest, Set<Placement.Processor> available) {
        return Placement.plan(specialistProcessor, available, manifest.artifact(form.role)).label;
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
