package dev.basisnet.demo

import dev.basisnet.core.Placement
import dev.basisnet.core.PixelFrame
import dev.basisnet.core.Preprocessor
import dev.basisnet.core.PresynthSpecialist
import dev.basisnet.core.ResynthesisPolicy
import dev.basisnet.core.Stages
import dev.basisnet.core.TensorSpec

// The two stages on LiteRT. Each is created, run and closed on its pipeline thread (the core's
// TwoStagePipeline guarantees it), which GPU contexts require. Everything here is a LiteRT call
// or a lookup; the logic (preprocessing, synthesis, policy, fallback) is the core's.

/** The image input as the model wants it: float, or quantized exactly as the Python runtime does. */
private fun imageFeed(spec: TensorSpec, x: FloatArray): Any =
    if (spec.isQuantized) Preprocessor.quantize(x, spec.scale, spec.zeroPoint, spec.dtype == "uint8") else x

/** The lightweight model, always on the CPU (XNNPACK): it previews every frame. */
class LightweightStage(assets: BasisNetAssets) : Stages.Lightweight<PixelFrame> {
    private val manifest = assets.manifest
    private val spec = manifest.artifact("lightweight").input("image")
    private val runner = LiteRt.openAsset(assets, "lightweight", Placement.Processor.CPU)
    private val preprocessor = Preprocessor(manifest.preprocessing)

    override fun run(frame: PixelFrame): Stages.Preview {
        val x = preprocessor.tensor(frame.argb(), frame.width(), frame.height(), manifest.preprocessing.lightweightResolution)
        val out = runner.run(mapOf("image" to imageFeed(spec, x)))
        return Stages.Preview(out.getValue("logits"), manifest.coefficientRows(out.getValue("coefficients")))
    }

    override fun processor(): String = Placement.Processor.CPU.label

    override fun close() = runner.close()
}

/** Coefficient-input specialist: one model, coefficients as an input, never rebuilt. */
class CoefficientStage(assets: BasisNetAssets, wanted: Placement.Processor, available: Set<Placement.Processor>) :
    Stages.Specialist<PixelFrame> {
    private val manifest = assets.manifest
    private val artifact = manifest.artifact("specialist_coefficient")
    private val spec = artifact.input("image")

    // The export's GPU verdict decides first: an artifact known not to run right there opens on the CPU, with the fix in the label.
    private val placement = Placement.open(wanted, available, artifact) { p -> LiteRt.openAsset(assets, "specialist_coefficient", p) }
    private val preprocessor = Preprocessor(manifest.preprocessing)
    private val flat = FloatArray(manifest.coefficientRows * manifest.bases) // reused every frame

    override fun run(frame: PixelFrame, coefficients: Array<FloatArray>): FloatArray {
        val x = preprocessor.tensor(frame.argb(), frame.width(), frame.height(), manifest.preprocessing.specialistResolution)
        coefficients.forEachIndexed { row, values -> values.copyInto(flat, row * manifest.bases) }
        return placement.model.run(mapOf("image" to imageFeed(spec, x), "coefficients" to flat)).getValue("logits")
    }

    override fun processor(): String = placement.label()

    override fun close() = placement.model.close()
}

/**
 * Pre-synthesized specialist: the core's [PresynthSpecialist] rebuilds the static-weight model
 * when the coefficients drift past the policy's tolerance; each model runs on the processor the
 * template was accepted on (probed once, here, with the template itself; a template the export's
 * GPU verdict says is refused or miscomputed there is not probed on the GPU at all). On the GPU
 * every rebuild is a new compile.
 */
class PresynthStage(
    assets: BasisNetAssets,
    wanted: Placement.Processor,
    available: Set<Placement.Processor>,
    policy: ResynthesisPolicy,
) : Stages.Specialist<PixelFrame> {
    private val manifest = assets.manifest
    private val artifact = manifest.artifact("specialist_presynth")
    private val spec = artifact.input("image")
    private val preprocessor = Preprocessor(manifest.preprocessing)
    private val scratch = assets.context.cacheDir
    private val placement = Placement.open(wanted, available, artifact) { p -> LiteRt.openAsset(assets, "specialist_presynth", p) }
        .also { it.model.close() } // the probe only decides the processor
    private val inner = PresynthSpecialist<PixelFrame>(assets.synthesizer(), policy) { bytes ->
        val runner = LiteRt.openBytes(scratch, bytes, artifact, placement.actual)
        object : Stages.Specialist<PixelFrame> {
            override fun run(frame: PixelFrame, coefficients: Array<FloatArray>): FloatArray {
                val x = preprocessor.tensor(frame.argb(), frame.width(), frame.height(), manifest.preprocessing.specialistResolution)
                return runner.run(mapOf("image" to imageFeed(spec, x))).getValue("logits")
            }

            override fun processor(): String = placement.label()

            override fun close() = runner.close()
        }
    }

    override fun run(frame: PixelFrame, coefficients: Array<FloatArray>): FloatArray = inner.run(frame, coefficients)

    override fun processor(): String = placement.label()

    override fun lastSynthesisMs(): Double = inner.lastSynthesisMs()

    override fun close() = inner.close()
}
