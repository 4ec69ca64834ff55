package dev.basisnet.demo

import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import com.google.ai.edge.litert.TensorBuffer
import dev.basisnet.core.Artifact
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.nnapi.NnApiDelegate

/** One loaded .tflite: named inputs (FloatArray or, for int8 inputs, ByteArray) to named float outputs. */
interface TensorRunner : AutoCloseable {
    fun run(feeds: Map<String, Any>): Map<String, FloatArray>

    override fun close()
}

/** Where the specialist runs. The lightweight model always runs on the CPU (XNNPACK). */
enum class Processor(val label: String) {
    GPU("GPU"),
    NNAPI("NNAPI"),
    CPU("CPU (XNNPACK)"),
}

/** LiteRT CompiledModel on one accelerator; buffers are looked up by signature name. */
class CompiledModelRunner(private val model: CompiledModel, artifact: Artifact) : TensorRunner {
    private val inputs: Map<String, TensorBuffer> = artifact.inputs.associate { it.name to model.createInputBuffer(it.name) }
    private val outputs: Map<String, TensorBuffer> = artifact.outputs.associate { it.name to model.createOutputBuffer(it.name) }

    override fun run(feeds: Map<String, Any>): Map<String, FloatArray> {
        for ((name, value) in feeds) {
            val buffer = inputs[name] ?: error("model has no input '$name' (has ${inputs.keys})")
            when (value) {
                is FloatArray -> buffer.writeFloat(value)
                is ByteArray -> buffer.writeInt8(value)
                else -> error("unsupported feed type for '$name'")
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

/**
 * NNAPI through the classic Interpreter and NnApiDelegate (org.tensorflow:tensorflow-lite):
 * LiteRT 2.x's CompiledModel has no NNAPI path. NNAPI is deprecated from Android 15.
 */
class NnapiRunner(model: ByteBuffer, private val artifact: Artifact) : TensorRunner {
    private val delegate = NnApiDelegate()
    private val interpreter = Interpreter(model, Interpreter.Options().addDelegate(delegate))

    override fun run(feeds: Map<String, Any>): Map<String, FloatArray> {
        val inputs = feeds.mapValues { (_, value) ->
            when (value) {
                is FloatArray -> direct(value.size * 4).apply { asFloatBuffer().put(value) }
                is ByteArray -> direct(value.size).apply { put(value); rewind() }
                else -> error("unsupported feed type")
            }
        }
        val outputs = artifact.outputs.associate { it.name to direct(it.elements() * 4) }
        interpreter.runSignature(inputs, outputs)
        return outputs.mapValues { (_, buffer) ->
            buffer.rewind()
            FloatArray(buffer.capacity() / 4).also { buffer.asFloatBuffer().get(it) }
        }
    }

    override fun close() {
        interpreter.close()
        delegate.close()
    }

    private fun direct(bytes: Int): ByteBuffer = ByteBuffer.allocateDirect(bytes).order(ByteOrder.nativeOrder())
}

/**
 * Opens models on one processor, falling back to the CPU when the wanted one is missing or
 * refuses the model; [label] says which processor is really used and why.
 */
class Backend private constructor(val processor: Processor, val label: String, private val scratch: File) {

    /** Opens an asset (the lightweight model, the coefficient-input specialist, the template). */
    fun openAsset(assets: BasisNetAssets, role: String): TensorRunner {
        val artifact = assets.manifest.artifact(role)
        return when (processor) {
            Processor.NNAPI -> NnapiRunner(assets.map(artifact.file), artifact)
            else -> CompiledModelRunner(
                CompiledModel.create(assets.context.assets, assets.assetPath(role), options()), artifact
            )
        }
    }

    /** Opens synthesized model bytes. CompiledModel loads from a file: write, then rename. */
    fun openBytes(model: ByteArray, artifact: Artifact): TensorRunner = when (processor) {
        Processor.NNAPI -> NnapiRunner(ByteBuffer.allocateDirect(model.size).put(model).apply { rewind() }, artifact)
        else -> {
            val tmp = File(scratch, "specialist_synth.tflite.tmp")
            tmp.writeBytes(model)
            val target = File(scratch, "specialist_synth.tflite")
            // Renaming replaces the directory entry only: a model still mapped from the old file keeps its data.
            check(tmp.renameTo(target)) { "cannot rename $tmp" }
            CompiledModelRunner(CompiledModel.create(target.absolutePath, options()), artifact)
        }
    }

    private fun options() = CompiledModel.Options(if (processor == Processor.GPU) Accelerator.GPU else Accelerator.CPU)

    companion object {
        /**
         * The wanted processor if this device has it and it accepts [probeRole]'s model,
         * else the CPU. Call on the thread that will run the models (GPU contexts are thread-bound).
         */
        fun choose(wanted: Processor, assets: BasisNetAssets, probeRole: String): Backend {
            val scratch = assets.context.cacheDir
            if (wanted == Processor.CPU) return Backend(Processor.CPU, Processor.CPU.label, scratch)
            val reason = try {
                if (wanted == Processor.GPU) {
                    val available = Environment.create().use { it.getAvailableAccelerators() }
                    if (Accelerator.GPU !in available) throw UnsupportedOperationException("no GPU accelerator on this device")
                }
                val backend = Backend(wanted, wanted.label, scratch)
                backend.openAsset(assets, probeRole).close() // the delegate must accept the whole model
                return backend
            } catch (e: Exception) {
                e.message ?: e.javaClass.simpleName
            }
            return Backend(Processor.CPU, "CPU (XNNPACK) — ${wanted.label} unavailable: $reason", scratch)
        }
    }
}
