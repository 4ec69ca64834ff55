package dev.basisnet.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** One model file of the export and its interface. */
public final class Artifact {
    public final String role; // "lightweight", "specialist_coefficient", "specialist_presynth"
    public final String file;
    public final String sha256;
    public final String quantization;
    public final List<TensorSpec> inputs;
    public final List<TensorSpec> outputs;

    Artifact(String role, String file, String sha256, String quantization,
             List<TensorSpec> inputs, List<TensorSpec> outputs) {
        this.role = role;
        this.file = file;
        this.sha256 = sha256;
        this.quantization = quantization;
        this.inputs = Collections.unmodifiableList(new ArrayList<>(inputs));
        this.outputs = Collections.unmodifiableList(new ArrayList<>(outputs));
    }

    public TensorSpec input(String name) {
        for (TensorSpec t : inputs) if (t.name.equals(name)) return t;
        throw new ManifestException(role + ": no input named '" + name + "' (has " + inputs + ")");
    }

    public TensorSpec output(String name) {
        for (TensorSpec t : outputs) if (t.name.equals(name)) return t;
        throw new ManifestException(role + ": no output named '" + name + "' (has " + outputs + ")");
    }
}
