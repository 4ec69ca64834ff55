package dev.basisnet.demo

import android.content.Context
import dev.basisnet.core.BasesFile
import dev.basisnet.core.Manifest
import dev.basisnet.core.ManifestException
import dev.basisnet.core.Patch
import dev.basisnet.core.Synthesizer
import java.io.FileInputStream
import java.io.IOException
import java.nio.ByteBuffer
import java.nio.channels.FileChannel
import java.security.MessageDigest

/**
 * The export under `assets/basisnet/`, as `basisnet-deploy android-assets` writes it.
 *
 * Loading checks what Python's `verify` checks first: the manifest schema and every artifact's
 * sha256, so a stale or half-copied asset folder fails at start-up with a message that says
 * how to fix it, not with wrong answers.
 */
class BasisNetAssets private constructor(val context: Context, val manifest: Manifest) {

    fun assetPath(role: String): String = "$DIR/${manifest.artifact(role).file}"

    fun bytes(name: String): ByteArray =
        try {
            context.assets.open("$DIR/$name").use { it.readBytes() }
        } catch (e: IOException) {
            throw ManifestException("assets/$DIR/$name: missing ($e); re-run basisnet-deploy android-assets")
        }

    /** A read-only mapping of an uncompressed asset (see `noCompress` in app/build.gradle.kts). */
    fun map(name: String): ByteBuffer {
        val fd = try {
            context.assets.openFd("$DIR/$name")
        } catch (e: IOException) {
            throw ManifestException(
                "assets/$DIR/$name: cannot be memory-mapped ($e); it must exist and be stored " +
                    "uncompressed (androidResources.noCompress)"
            )
        }
        // The mapping stays valid after the descriptor and channel are closed.
        return fd.use {
            FileInputStream(it.fileDescriptor).channel.use { channel ->
                channel.map(FileChannel.MapMode.READ_ONLY, it.startOffset, it.length)
            }
        }
    }

    /** The pre-synthesized specialist's synthesizer: template, patch table, mapped bases. */
    fun synthesizer(): Synthesizer {
        val presynth = manifest.artifact("specialist_presynth")
        val basesFile = manifest.basesRawFile
            ?: throw ManifestException(
                "manifest.json: no bases_raw entry; copy the export with basisnet-deploy android-assets, not by hand"
            )
        val table = Patch.parseTable(String(bytes(manifest.patchTableFile), Charsets.UTF_8))
        return Synthesizer(bytes(presynth.file), table, BasesFile(map(basesFile), manifest.basesRawIndex), manifest.bases)
    }

    private fun verify() {
        for (artifact in manifest.artifacts.values) {
            val digest = MessageDigest.getInstance("SHA-256").digest(bytes(artifact.file))
            val hex = digest.joinToString("") { "%02x".format(it) }
            if (hex != artifact.sha256) {
                throw ManifestException(
                    "assets/$DIR/${artifact.file}: sha256 differs from the manifest (truncated or from " +
                        "another export); re-run basisnet-deploy android-assets and rebuild"
                )
            }
        }
    }

    companion object {
        const val DIR = "basisnet"

        fun load(context: Context): BasisNetAssets {
            val text = try {
                context.assets.open("$DIR/manifest.json").bufferedReader().use { it.readText() }
            } catch (e: IOException) {
                throw ManifestException(
                    "assets/$DIR/manifest.json: missing. Run `basisnet-deploy android-assets EXPORT_DIR` " +
                        "from the repository root, then rebuild the app"
                )
            }
            val manifest = Manifest.parse(text)
            if (manifest.target != "tflite") {
                throw ManifestException("manifest.json: a ${manifest.target} export; the app runs LiteRT (.tflite)")
            }
            return BasisNetAssets(context.applicationContext, manifest).also { it.verify() }
        }
    }
}
