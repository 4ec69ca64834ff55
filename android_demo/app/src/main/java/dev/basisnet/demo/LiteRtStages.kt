package dev.basisnet.demo

import dev.basisnet.core.PresynthSpecialist
import dev.basisnet.core.Preprocessor
import dev.basisnet.core.ResynthesisPolicy
import dev.basisnet.core.Stages
import dev.basisnet.core.TensorSpec

/** The image input as the model wants it: float, or quantized exactly as the Python runtime does. */
private fun imageFeed(spec: TensorSpec, x: FloatArray): Any =
    if (spec.isQuantized) Preprocessor.quantize(x, spec.scale, spec.zeroPoint, spec.dtype == "uint8") else x

/** The lightweight model on the CPU (LiteRT CompiledModel, CPU accelerator = XNNPACK). */
class LightweightStage(private val assets: BasisNetAssets) : Stages.Lightweight<Frame> {
    private val manifest = assets.manifest
    private val artifact = manifest.artifact("lightweight")
    private val runner = Backend.choose(Processor.CPU, assets, "lightweight").openAsset(assets, "lightweight")
    private val preprocessor = Preprocessor(manifest.preprocessing)

    override fun run(frame: Frame): Stages.Preview {
        val x = preprocessor.tensor(frame.argb, frame.width, frame.height, manifest.preprocessing.lightweightResolution)
        val out = runner.run(mapOf("image" to imageFeed(artifact.input("image"), x)))
        return Stages.Preview(out.getValue("logits"), manifest.coefficientRows(out.getValue("coefficients")))
    }

    override fun processor() = Processor.CPU.label

    override fun close() = runner.close()
}

/** Coefficient-input specialist: one model, synthesis in the graph, coefficients as an input. */
class CoefficientSpecialist(private val assets: BasisNetAssets, wanted: Processor) : Stages.Specialist<Frame> {
    private val manifest = assets.manifest
    private val artifact = manifest.artifact("specialist_coefficient")
    private val backend = Backend.choose(wanted, assets, "specialist_coefficient")
    private val runner = backend.openAsset(assets, "specialist_coefficient")
    private val preprocessor = Preprocessor(manifest.preprocessing)

    override fun run(frame: Frame, coefficients: Array<FloatArray>): FloatArray {
        val x = preprocessor.tensor(frame.argb, frame.width, frame.height, manifest.preprocessing.specialistResolution)
        val flat = FloatArray(manifest.coefficientRows * manifest.bases)
        coefficients.forEachIndexed { l, row -> row.copyInto(flat, l * manifest.bases) }
        val out = runner.run(mapOf("image" to imageFeed(artifact.input("image"), x), "coefficients" to flat))
        return out.getValue("logits")
    }

    override fun processor() = backend.label

    override fun close() = runner.close()
}

/**
 * Pre-synthesized specialist: the core's [PresynthSpecialist] mixes the bases into the template
 * (the same bytes Python's synthesize() writes) under the runner's re-synthesis policy, and each
 * synthesized model runs as an ordinary static-weight model on the chosen processor.
 */
class PresynthStage(assets: BasisNetAssets, wanted: Processor, policy: ResynthesisPolicy) : Stages.Specialist<Frame> {
    private val manifest = assets.manifest
    private val artifact = manifest.artifact("specialist_presynth")
    private val backend = Backend.choose(wanted, assets, "specialist_presynth") // probes with the template
    private val preprocessor = Preprocessor(manifest.preprocessing)
    private val inner = PresynthSpecialist<Frame>(assets.synthesizer(), policy) { bytes ->
        val runner = backend.openBytes(bytes, artifact)
        object : Stages.Specialist<Frame> {
            override fun run(frame: Frame, coefficients: Array<FloatArray>): FloatArray {
                val x = preprocessor.tensor(frame.argb, frame.width, frame.height, manifest.preprocessing.specialistResolution)
                return runner.run(mapOf("image" to imageFeed(artifact.input("image"), x))).getValue("logits")
            }

            override fun processor() = backend.label

            override fun close() = runner.close()
        }
    }

    val resyntheses: Int get() = inner.resyntheses()

    override fun run(frame: Frame, coefficients: Array<FloatArray>): FloatArray = inner.run(frame, coefficients)

    override fun processor() = backend.label

    override fun lastSynthesisMs() = inner.lastSynthesisMs()

    override fun close() = inner.close()
}
