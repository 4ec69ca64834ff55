package dev.basisnet.demo

import android.content.Context
import dev.basisnet.core.AssetCheck
import dev.basisnet.core.BasesFile
import dev.basisnet.core.CompactBases
import dev.basisnet.core.Manifest
import dev.basisnet.core.ManifestException
import dev.basisnet.core.Patch
import dev.basisnet.core.Synthesizer
import java.io.FileInputStream
import java.io.IOException
import java.io.InputStream
import java.nio.ByteBuffer
import java.nio.channels.FileChannel

/**
 * The export under `assets/basisnet/`, as `basisnet-deploy android-assets` writes it. [load]
 * runs the core's [AssetCheck] (schema, target, every sha256), so a missing, foreign or tampered
 * asset stops the app with a message naming the file, not with wrong answers. Call off the main thread.
 */
class BasisNetAssets private constructor(val context: Context, val manifest: Manifest) {

    fun assetPath(role: String): String = "$DIR/${manifest.artifact(role).file}"

    fun bytes(name: String): ByteArray =
        try {
            context.assets.open("$DIR/$name").use { it.readBytes() }
        } catch (e: IOException) {
            throw ManifestException("assets/$DIR/$name: missing ($e); ${AssetCheck.FIX}")
        }

    /** A read-only mapping of an uncompressed asset (see `noCompress` in app/build.gradle.kts). */
    fun map(name: String): ByteBuffer {
        val fd = try {
            context.assets.openFd("$DIR/$name")
        } catch (e: IOException) {
            throw ManifestException(
                "assets/$DIR/$name: cannot be memory-mapped ($e); it must exist and be stored " +
                    "uncompressed (androidResources.noCompress)",
            )
        }
        // The mapping stays valid after the descriptor and channel are closed.
        return fd.use { afd ->
            FileInputStream(afd.fileDescriptor).channel.use { channel ->
                channel.map(FileChannel.MapMode.READ_ONLY, afd.startOffset, afd.length)
            }
        }
    }

    /**
     * The pre-synthesized specialist's synthesizer: template, patch table, mapped bases. With
     * [compact] (the default) it reads the int8 bases (`specialist_bases_int8.bin`, a quarter of
     * the float32 bytes) where the assets have them, else the float32 `specialist_bases.bin`.
     */
    fun synthesizer(compact: Boolean = true): Synthesizer {
        val presynth = manifest.artifact("specialist_presynth")
        val table = Patch.parseTable(String(bytes(manifest.patchTableFile), Charsets.UTF_8))
        val int8File = manifest.basesInt8RawFile
        if (compact && int8File != null) {
            return Synthesizer(bytes(presynth.file), table, CompactBases(map(int8File), manifest.basesInt8RawIndex), manifest.bases)
        }
        val basesFile = manifest.basesRawFile
            ?: throw ManifestException("manifest.json: no bases_raw entry; ${AssetCheck.FIX}")
        return Synthesizer(bytes(presynth.file), table, BasesFile(map(basesFile), manifest.basesRawIndex), manifest.bases)
    }

    private class Source(private val context: Context) : AssetCheck.Source {
        override fun open(name: String): InputStream = context.assets.open("$DIR/$name")

        override fun describe(name: String): String = "assets/$DIR/$name"
    }

    companion object {
        const val DIR = "basisnet"

        fun load(context: Context): BasisNetAssets {
            val text = try {
                context.assets.open("$DIR/manifest.json").bufferedReader().use { it.readText() }
            } catch (e: IOException) {
                throw ManifestException("assets/$DIR/manifest.json: missing; ${AssetCheck.FIX}")
            }
            val manifest = Manifest.parse(text)
            AssetCheck.verify(manifest, Source(context))
            return BasisNetAssets(context.applicationContext, manifest)
        }
    }
}
