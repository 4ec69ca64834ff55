"""The manifest of an export directory: the one place that knows its file name and schema.

NumPy-free and TensorFlow-free: every stage that reads an export (runtime, report, Android
assets) comes through here.
"""

from __future__ import annotations

import json
from pathlib import Path

from basisnet_deploy.common.errors import UserError
from basisnet_deploy.common.files import sha256_hex
from basisnet_deploy.data import Preprocessing

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
BASES_FILE = "specialist_bases.npz"
PATCH_TABLE_FILE = "specialist_patches.json"
ROLES = {
    "lightweight": "Lightweight model: previews the image on the CPU; class logits and the "
                   "per-block coefficients.",
    "specialist_coefficient": "Specialist, coefficient-input: image + coefficients in, logits "
                              "out; bases inside, synthesis in the graph.",
    "specialist_presynth": "Specialist, pre-synthesized: static-weight template; synthesize() "
                           "patches one coefficient set's kernels in place.",
    "baseline_plain": "Plain MobileNet of the specialist's shape (the template's weights), for "
                      "bench's overhead ratio; not part of the pipeline.",
}


def manifest_preprocessing(manifest):
    """The manifest's preprocessing as a :class:`Preprocessing` (stage resolutions aside)."""
    p = manifest["preprocessing"]
    return Preprocessing(resize=p["resize"], crop_fraction=p["crop_fraction"],
                         input_range=tuple(p["input_range"]), interpolation=p["interpolation"])


def load_manifest(directory) -> dict:
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise UserError(f"{path}: missing; pass a directory written by basisnet-deploy export")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}") from None
    if manifest.get("schema_version") != 1:
        raise UserError(f"{path}: unsupported schema_version {manifest.get('schema_version')!r}")
    return manifest


def check_files(directory, manifest) -> None:
    """Every artifact file present, with the size and sha256 the manifest records."""
    directory = Path(directory)
    for role, entry in manifest["artifacts"].items():
        path = directory / entry["file"]
        if not path.is_file():
            raise UserError(f"{path}: missing ({role}); re-run basisnet-deploy export")
        data = path.read_bytes()
        if len(data) != entry["bytes"] or sha256_hex(data) != entry["sha256"]:
            raise UserError(f"{path}: {len(data)} bytes, sha256 differs from the manifest "
                            f"({entry['bytes']} bytes expected): truncated or modified; "
                            "re-run basisnet-deploy export")


def expected_madds(cost: dict, exit_rate: float) -> float:
    """Average MAdds per frame when a fraction ``exit_rate`` of frames skip the specialist."""
    st = cost["stages"]
    second = st["synthesis"]["madds"] + st["specialist"]["madds"]
    return st["lightweight"]["madds"] + (1.0 - exit_rate) * second
