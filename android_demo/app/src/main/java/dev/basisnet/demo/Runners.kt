package dev.basisnet.demo

import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import com.google.ai.edge.litert.TensorBuffer
import dev.basisnet.core.Artifact
import dev.basisnet.core.Placement
import java.io.File

/**
 * One LiteRT `CompiledModel` on one accelerator. Input and output buffers are created once and
 * reused for every frame; inputs are fed by signature name (FloatArray, or ByteArray for int8).
 * LiteRT is the only runtime: no classic Interpreter, no NNAPI (deprecated from Android 15).
 */
class CompiledModelRunner(private val model: CompiledModel, artifact: Artifact) : AutoCloseable {
    private val inputs: Map<String, TensorBuffer> = artifact.inputs.associate { it.name to model.createInputBuffer(it.name) }
    private val outputs: Map<String, TensorBuffer> = artifact.outputs.associate { it.name to model.createOutputBuffer(it.name) }

    fun run(feeds: Map<String, Any>): Map<String, FloatArray> {
        for ((name, value) in feeds) {
            val buffer = inputs[name] ?: error("model has no input '$name' (has ${inputs.keys})")
            when (value) {
                is FloatArray -> buffer.writeFloat(value)
                is ByteArray -> buffer.writeInt8(value)
                else -> error("unsupported feed type ${value.javaClass.simpleName} for '$name'")
            }
        }
        model.run(inputs, outputs)
        return outputs.mapValues { it.value.readFloat() }
    }

    override fun close() {
        inputs.values.forEach { it.close() }
        outputs.values.forEach { it.close() }
        model.close()
    }
}

/** LiteRT's names for the core's processors. */
fun Placement.Processor.accelerator(): Accelerator = when (this) {
    Placement.Processor.CPU -> Accelerator.CPU
    Placement.Processor.GPU -> Accelerator.GPU
    Placement.Processor.NPU -> Accelerator.NPU
}

object LiteRt {
    /** The processors this device's LiteRT environment offers; the CPU always. */
    fun available(): Set<Placement.Processor> {
        val accelerators = try {
            Environment.create().use { it.getAvailableAccelerators() }
        } catch (e: Exception) {
            emptySet()
        }
        return Placement.Processor.values().filter { it == Placement.Processor.CPU || it.accelerator() in accelerators }.toSet()
    }

    fun options(processor: Placement.Processor) = CompiledModel.Options(processor.accelerator())

    /** Compiles an asset model (memory-mapped from the APK) on [processor]. */
    fun openAsset(assets: BasisNetAssets, role: String, processor: Placement.Processor): CompiledModelRunner =
        CompiledModelRunner(
            CompiledModel.create(assets.context.assets, assets.assetPath(role), options(processor)),
            assets.manifest.artifact(role),
        )

    /** Compiles synthesized model bytes: CompiledModel loads from a file, so write, then rename. */
    fun openBytes(scratch: File, model: ByteArray, artifact: Artifact, processor: Placement.Processor): CompiledModelRunner {
        val tmp = File(scratch, "specialist_synth.tflite.tmp")
        tmp.writeBytes(model)
        val target = File(scratch, "specialist_synth.tflite")
        // Renaming replaces the directory entry only: a model still mapped from the old file keeps its data.
        check(tmp.renameTo(target)) { "cannot rename $tmp to $target" }
        return CompiledModelRunner(CompiledModel.create(target.absolutePath, options(processor)), artifact)
    }
}
