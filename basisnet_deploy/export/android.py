"""An export, laid out as the Android demo's assets.

The app reads the same manifest and .tflite files as the Python runtime. One thing changes:
the bases leave ``specialist_bases.npz`` for ``specialist_bases.bin``, raw little-endian
float32 tensors back to back, so the app can memory-map them from an uncompressed asset
instead of unzipping K copies of the non-shared weights onto the Java heap. The copied
manifest gains ``artifacts.specialist_presynth.bases_raw`` (file, sha256, per-tensor byte
offset and shape) and an ``android_assets`` block naming its source.

The compact int8 bases (``specialist_bases_int8.npz``, see ``artifacts.compact_bases``) are
written raw too, as ``specialist_bases_int8.bin``: for every patched layer L in the patch
table's order, ``L/q8`` (int8 [K, *S]), ``L/scales`` (float32 LE [K, C]) and, where the layer
has one, ``L/bias`` (float32 LE [C]), back to back, each tensor starting on a 4-byte boundary
(zero padding after an int8 tensor whose size is not a multiple of 4) so the app reads floats
aligned. The copied manifest indexes it in ``artifacts.specialist_presynth.bases_int8_raw``
(file, bytes, sha256, format, per-tensor offset, shape and dtype). The app synthesizes from
these by default (a quarter of the float32 bases' bytes), from ``bases_raw`` otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from basisnet_deploy import __version__
from basisnet_deploy.common.files import check_output_dir, staged_directory
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.targets import registry
from basisnet_deploy.artifacts.manifest import (MANIFEST_FILE, PresynthFiles, Role, check_files,
                                                load_manifest)
from basisnet_deploy.common.files import read_verified, sha256_hex
from basisnet_deploy.artifacts.synthesis import load_bases, load_presynth

DEFAULT_OUT = Path("android_demo/app/src/main/assets/basisnet")
BASES_RAW = "specialist_bases.bin"
BASES_INT8_RAW = "specialist_bases_int8.bin"


@dataclass(frozen=True)
class AndroidAssets:
    """What ``android-assets`` wrote: the folder, its source export and each file's size."""

    out: Path
    source: Path
    files: dict[str, int]

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

    def to_json(self) -> dict:
        return {"out": str(self.out), "source": str(self.source), "files": self.files,
                "total_bytes": self.total_bytes}


def android_assets(export_dir, out_dir=DEFAULT_OUT) -> AndroidAssets:
    """Copy a TFLite export into ``out_dir`` (replaced atomically)."""
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    project = Path(DEFAULT_OUT.parts[0])  # android_demo/, whose app reads the assets
    if out_dir == DEFAULT_OUT and not project.is_dir():
        raise UserError(f"no {project}/ here for the default --out {DEFAULT_OUT}: run from the "
                        "repository's root, or pass --out DIR")
    if out_dir.resolve().is_relative_to(export_dir.resolve()):
        raise UserError(f"--out {out_dir}: inside the export {export_dir}, which it copies; "
                        "choose a folder outside it")
    check_output_dir(out_dir, "android-assets", legacy=_ours)
    manifest = load_manifest(export_dir)
    if not manifest.target_spec.android:
        runs = [t for t in registry.names() if registry.get(t).android]
        raise UserError(f"{export_dir}: target is {manifest.target!r}; the Android demo runs "
                        f"LiteRT: re-export with --target {' or '.join(runs)}")
    check_files(export_dir, manifest)
    artifacts = manifest.artifacts
    if not {Role.SPECIALIST_PRESYNTH, Role.SPECIALIST_COEFFICIENT} & set(artifacts):
        raise UserError(f"{export_dir}: the app needs the lightweight model and a specialist; "
                        "re-export with --specialist all")

    files = {entry.file: (entry.sha256, entry.bytes, entry.role.value) for entry in artifacts.values()}
    if Role.SPECIALIST_PRESYNTH in artifacts:  # bases readable, patch table fits the template
        table = load_presynth(export_dir, artifacts[Role.SPECIALIST_PRESYNTH]).table
        if any(p.per_tensor for p in table):
            raise UserError(f"{export_dir}: the patch table scales kernels per tensor (an ONNX "
                            "form); the Android core patches per-channel TFLite templates: re-export")
        if any(p.bias_dtype != "int32" for p in table):
            raise UserError(f"{export_dir}: the template has int16 activations (int64 biases, the "
                            "full-16x8 recipe); the Android core patches int8 and float templates: "
                            "re-export with --int8-recipe full or fidelity, or --specialist coefficient")
    with staged_directory(out_dir, "android-assets", legacy=_ours) as tmp:
        presynth = artifacts.get(Role.SPECIALIST_PRESYNTH)
        if presynth is not None:
            files[presynth.presynth.patch_table] = (presynth.presynth.patch_table_sha256, None,
                                                    "patch table")
            presynth.details["bases_raw"] = _write_bases(export_dir, presynth.presynth, tmp / BASES_RAW)
            presynth.details["bases_int8_raw"] = _write_compact(export_dir, presynth.presynth,
                                                                tmp / BASES_INT8_RAW)
        for name, (sha256, size, what) in files.items():  # the bytes checked, not the path
            (tmp / name).write_bytes(read_verified(export_dir, name, sha256, size, what))
        manifest.record.android_assets = {"source": export_dir.resolve().name,  # no home folder in an APK
                                          "generator": f"basisnet-deploy {__version__}"}
        # the app needs no checkpoint, and its absolute path (a home folder) is not for an APK
        manifest.checkpoint = {k: v for k, v in manifest.checkpoint.items() if k != "path"}
        manifest.save(tmp)
    return AndroidAssets(out_dir, export_dir, {p.name: p.stat().st_size for p in sorted(out_dir.iterdir())})


def _ours(directory: Path) -> bool:
    try:
        return "android_assets" in json.loads((directory / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return False


def _write_bases(export_dir: Path, files: PresynthFiles, target: Path) -> dict:
    data = read_verified(export_dir, files.bases, files.bases_sha256, what="bases")
    tensors, offset, bases = {}, 0, load_bases(data, export_dir / files.bases)
    with open(target, "wb") as f:
        for name in sorted(bases):
            array = np.ascontiguousarray(bases[name], "<f4")
            f.write(array.tobytes())
            tensors[name] = {"offset": offset, "shape": list(array.shape)}
            offset += array.nbytes
    digest = sha256_hex(target.read_bytes())
    return {"file": target.name, "bytes": offset, "sha256": digest, "dtype": "float32",
            "byte_order": "little", "tensors": tensors}


def _write_compact(export_dir: Path, files: PresynthFiles, target: Path) -> dict:
    """``specialist_bases_int8.bin`` (module docstring) and its manifest index."""
    from basisnet_deploy.artifacts import compact_bases
    from basisnet_deploy.artifacts.synthesis import load_table

    data = read_verified(export_dir, files.bases_int8, files.bases_int8_sha256, what="int8 bases")
    table = load_table(read_verified(export_dir, files.patch_table, files.patch_table_sha256,
                                     what="patch table").decode())
    arrays = compact_bases.load(export_dir / files.bases_int8, table, data)
    tensors, offset = {}, 0
    with open(target, "wb") as f:
        for p in table:
            for key, dtype in ((p.layer + "/q8", "i1"), (p.layer + "/scales", "<f4"),
                               (p.layer + "/bias", "<f4")):
                if key not in arrays:  # only a bias can be absent (compact_bases.check)
                    continue
                pad = -offset % 4
                f.write(b"\0" * pad)
                offset += pad
                array = np.ascontiguousarray(arrays[key], dtype)
                f.write(array.tobytes())
                tensors[key] = {"offset": offset, "shape": list(array.shape),
                                "dtype": "int8" if dtype == "i1" else "float32"}
                offset += array.nbytes
    digest = sha256_hex(target.read_bytes())
    return {"file": target.name, "bytes": offset, "sha256": digest,
            "format": compact_bases.FORMAT, "byte_order": "little", "tensors": tensors}
