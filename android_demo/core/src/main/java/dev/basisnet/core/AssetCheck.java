package dev.basisnet.core;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

/**
 * What the app checks before it loads a model, the way Python's {@code verify} does: every
 * artifact the manifest lists is present and has the recorded sha256, and the export is a
 * TFLite one. Each failure is a {@link ManifestException} whose message names the file and the
 * command that fixes it, for the error screen and the log.
 */
public final class AssetCheck {
    /** Where the export's files are (the app: {@code AssetManager} under {@code assets/basisnet/}). */
    public interface Source {
        /** Opens a file of the export; throws {@link FileNotFoundException} (or any IOException) if missing. */
        InputStream open(String name) throws IOException;

        /** How to name a file in messages, e.g. "assets/basisnet/lightweight.tflite". */
        String describe(String name);
    }

    public static final String FIX = "re-run `basisnet-deploy android-assets EXPORT_DIR` from the repository root, then rebuild the app";

    private AssetCheck() {
    }

    /** Throws on the first problem; returns normally when the export is usable. */
    public static void verify(Manifest manifest, Source source) {
        if (!"tflite".equals(manifest.target)) {
            throw new ManifestException("manifest.json: a " + manifest.target
                    + " export; the app runs LiteRT (.tflite). Export with --target tflite and " + FIX);
        }
        for (Artifact artifact : manifest.artifacts.values()) {
            checkFile(source, artifact.file, artifact.sha256);
        }
        if (manifest.hasArtifact("specialist_presynth")) {
            if (manifest.basesRawFile == null) {
                throw new ManifestException("manifest.json: the pre-synthesized specialist has no bases_raw entry "
                        + "(copied by hand?); " + FIX);
            }
            checkFile(source, manifest.patchTableFile, manifest.patchTableSha256);
            checkFile(source, manifest.basesRawFile, manifest.basesRawSha256);
            if (manifest.basesInt8RawFile != null) requirePresent(source, manifest.basesInt8RawFile);
        }
    }

    static void checkFile(Source source, String name, String expectedSha256) {
        String actual = sha256(source, name);
        if (!actual.equalsIgnoreCase(expectedSha256)) {
            throw new ManifestException(source.describe(name) + ": sha256 " + actual.substring(0, 12)
                    + "… differs from the manifest's " + abbreviate(expectedSha256)
                    + " (truncated, edited, or from another export); " + FIX);
        }
    }

    private static void requirePresent(Source source, String name) {
        try (InputStream in = source.open(name)) {
            in.read();
        } catch (IOException e) {
            throw missing(source, name, e);
        }
    }

    static String sha256(Source source, String name) {
        MessageDigest digest;
        try {
            digest = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e); // every Java platform has SHA-256
        }
        byte[] chunk = new byte[1 << 16];
        try (InputStream in = source.open(name)) {
            for (int n; (n = in.read(chunk)) > 0; ) digest.update(chunk, 0, n);
        } catch (IOException e) {
            throw missing(source, name, e);
        }
        StringBuilder hex = new StringBuilder();
        for (byte b : digest.digest()) hex.append(String.format("%02x", b));
        return hex.toString();
    }

    private static ManifestException missing(Source source, String name, IOException e) {
        return new ManifestException(source.describe(name) + ": missing or unreadable (" + Placement.describe(e)
                + "); " + FIX);
    }

    private static String abbreviate(String sha) {
        return sha.length() > 12 ? sha.substring(0, 12) + "…" : sha;
    }
}
