"""``check``: integrity and GPU-delegate compatibility of every artifact in an export."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from basisnet_deploy.artifacts.manifest import Role, agreement_warning, check_files, load_manifest
from basisnet_deploy.artifacts.synthesis import load_presynth

_NO_ANALYZER = "none for ONNX; GPU means the CUDA execution provider"


def check_export(directory) -> dict:
    """role -> {"sha256_ok", "compatible", "warnings", "analyzer"}.

    Every artifact's size and sha256 are checked first (a mismatch is a UserError). TF's GPU
    compatibility analyzer then runs on each .tflite; it needs TensorFlow, and where that is
    not installed the verdict is None with the reason, never a traceback.
    """
    directory = Path(directory)
    manifest = load_manifest(directory)
    check_files(directory, manifest)
    if Role.SPECIALIST_PRESYNTH in manifest.artifacts:  # bases and patch table fit the template
        load_presynth(directory, manifest.artifacts[Role.SPECIALIST_PRESYNTH])
    analyzer = _gpu_analyzer() if manifest.target == "tflite" else None
    report = {}
    warning = agreement_warning(manifest)
    if warning:
        report["warning"] = warning
    for role, entry in manifest.artifacts.items():
        if manifest.target != "tflite":
            verdict = {"compatible": None, "warnings": [], "analyzer": _NO_ANALYZER}
        elif isinstance(analyzer, str):
            verdict = {"compatible": None, "warnings": [], "analyzer": analyzer}
        else:
            verdict = analyzer(directory / entry.file)
        report[role.value] = {"sha256_ok": True, **verdict}
    return report


def _gpu_analyzer():
    """TF's GPU compatibility analyzer, or the reason it cannot run here."""
    try:
        missing = importlib.util.find_spec("tensorflow") is None
    except ImportError:  # a finder that refuses it outright
        missing = True
    if missing:
        return ("TF's GPU analyzer needs TensorFlow, which this install lacks: "
                "pip install 'basisnet-deploy[convert]'")
    from basisnet_deploy.converters.tflite import gpu_compatibility

    return gpu_compatibility
