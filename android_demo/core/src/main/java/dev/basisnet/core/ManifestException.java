package dev.basisnet.core;

/** A manifest, patch table or bases file that this core cannot use; the message names the field and the fix. */
public final class ManifestException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public ManifestException(String message) {
        super(message);
    }
}
