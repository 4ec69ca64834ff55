// Compile-only signatures of the LiteRT 2.x Kotlin API (com.google.ai.edge.litert) that the app
// calls, transcribed from google-ai-edge/LiteRT litert/kotlin/src/main/kotlin/com/google/ai/edge/
// litert/{Common,Model,Environment,TensorBuffer}.kt (see android_demo/README.md for the commits).
// Bodies throw: these classes exist only so the app's Kotlin can be type-checked without Maven.
package com.google.ai.edge.litert

import android.content.res.AssetManager

private fun stub(): Nothing = throw RuntimeException("Stub!")

enum class Accelerator(val value: Int) { NONE(0), CPU(1), GPU(2), NPU(3) }

abstract class JniHandle internal constructor(internal val handle: Long) : AutoCloseable {
    protected abstract fun destroy()

    final override fun close(): Unit = stub()
}

class LiteRtException(message: String) : Exception(message)

class TensorBuffer internal constructor(handle: Long) : JniHandle(handle) {
    fun writeInt(data: IntArray): Unit = stub()
    fun writeFloat(data: FloatArray): Unit = stub()
    fun writeInt8(data: ByteArray): Unit = stub()
    fun readInt(): IntArray = stub()
    fun readFloat(): FloatArray = stub()
    fun readInt8(): ByteArray = stub()
    override fun destroy(): Unit = stub()
}

class Environment private constructor(handle: Long) : JniHandle(handle) {
    enum class Option(val value: Int) { CompilerPluginLibraryDir(0), DispatchLibraryDir(1) }

    fun getAvailableAccelerators(): Set<Accelerator> = stub()
    override fun destroy(): Unit = stub()

    companion object {
        @JvmStatic @JvmOverloads
        fun create(options: Map<Option, String> = mapOf()): Environment = stub()
    }
}

class Model private constructor(handle: Long) : JniHandle(handle) {
    override fun destroy(): Unit = stub()
}

class CompiledModel private constructor(handle: Long) : JniHandle(handle) {
    class Options(vararg val accelerators: Accelerator)

    fun createInputBuffer(inputName: String, signature: String? = null): TensorBuffer = stub()
    fun createOutputBuffer(outputName: String, signature: String? = null): TensorBuffer = stub()
    fun run(inputs: Map<String, TensorBuffer>, outputs: Map<String, TensorBuffer>, signature: String? = null): Unit = stub()
    override fun destroy(): Unit = stub()

    companion object {
        @JvmStatic @JvmOverloads
        fun create(model: Model, options: Options = Options(Accelerator.CPU), optionalEnv: Environment? = null): CompiledModel = stub()

        @JvmStatic @JvmOverloads
        fun create(assetManager: AssetManager, assetName: String, options: Options = Options(Accelerator.CPU),
                   optionalEnv: Environment? = null): CompiledModel = stub()

        @JvmStatic @JvmOverloads
        fun create(filePath: String, options: Options = Options(Accelerator.CPU), optionalEnv: Environment? = null): CompiledModel = stub()
    }
}
