"""``check``: integrity of every artifact in an export, and what the GPU makes of each.

The GPU verdict comes from LiteRT's GPU accelerator itself where a device is present: each
.tflite is compiled for it, run on probe inputs and compared with the CPU
(:func:`basisnet_deploy.runtime.gpu.probe_gpu`). Without a device it is a static guess from
the artifact's kind, labelled as such (:func:`basisnet_deploy.runtime.gpu.static_gpu_guess`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from basisnet_deploy.artifacts.manifest import (Manifest, Role, agreement_warning, check_files, load_manifest,
                                                model_bytes)
from basisnet_deploy.artifacts.synthesis import load_presynth
from basisnet_deploy.targets.registry import GpuCheck
from basisnet_deploy.runtime.gpu import (GpuStatus, GpuVerdict, onnx_webgpu_devices, probe_gpu, probe_onnx_webgpu,
                                         static_gpu_guess)



@dataclass(frozen=True)
class ArtifactCheck:
    sha256_ok: bool
    gpu: dict  # GpuVerdict JSON, or {"status": None, "reason": why there is none}
    # the verdict measured when the export was written (the manifest's), shown where this
    # machine has no GPU to measure one: a static guess says less than that run did
    gpu_at_export: dict | None = None


@dataclass(frozen=True)
class ExportCheck:
    """``check``'s result: every artifact's integrity and GPU verdict."""

    artifacts: dict[Role, ArtifactCheck]
    warning: str | None = None  # for an export forced through the agreement gate

    def to_json(self) -> dict:
        """role -> {"sha256_ok", "gpu", and "gpu_at_export" where there is one}, plus
        "warning" where there is one."""
        out = {"warning": self.warning} if self.warning else {}
        return {**out, **{role.value: {"sha256_ok": c.sha256_ok, "gpu": c.gpu,
                                       **({"gpu_at_export": c.gpu_at_export} if c.gpu_at_export else {})}
                          for role, c in self.artifacts.items()}}


def check_export(directory) -> ExportCheck:
    """Every artifact's size and sha256 (a mismatch is a UserError), then its GPU verdict."""
    directory = Path(directory)
    manifest = load_manifest(directory)
    models = check_files(directory, manifest)
    if Role.SPECIALIST_PRESYNTH in manifest.artifacts:  # bases and patch table fit the template
        load_presynth(directory, manifest.artifacts[Role.SPECIALIST_PRESYNTH],
                      models[Role.SPECIALIST_PRESYNTH])
    verdicts, no_gpu = _gpu_check(directory, manifest, models)
    checks = {}
    for role, entry in manifest.artifacts.items():
        gpu = verdicts[role].to_json() if role in verdicts else {"status": None, "reason": no_gpu}
        checks[role] = ArtifactCheck(True, gpu, _recorded_verdict(entry, gpu))
    return ExportCheck(checks, agreement_warning(manifest))


def _recorded_verdict(entry, gpu: dict) -> dict | None:
    """The manifest's export-time GPU verdict for ``entry``, where it ran on a device and this
    check did not (no device now: a static guess or none)."""
    if gpu.get("status") not in (None, GpuStatus.STATIC_GUESS.value):
        return None
    try:
        recorded = GpuVerdict.from_json({**entry.details["gpu"], "artifact": entry.file})
        shown = recorded.to_json()
        recorded.summary()  # what the text shows: it must render
    except (KeyError, TypeError, ValueError, AttributeError):  # none recorded, or not a verdict
        return None
    if recorded.status in (GpuStatus.STATIC_GUESS, GpuStatus.NO_DEVICE):
        return None
    text = [shown.get("adapter"), shown.get("reason")] + list(shown.get("unsupported_ops") or [])
    if not all(v is None or isinstance(v, str) for v in text):  # a hand edit: not a verdict
        return None
    return shown


def gpu_verdicts(directory, manifest: Manifest, say=None,
                 models: dict[Role, bytes] | None = None) -> dict[Role, GpuVerdict]:
    """Each TFLite artifact's GPU verdict: run on the accelerator while it finds a device,
    a static guess for every artifact once it finds none. ONNX: onnxruntime's WebGPU EP's
    verdicts where it finds a device, else {} (no static guess). ``models``: each artifact's
    bytes, already checked against the manifest; without them each artifact is read once and
    checked here. The check runs those bytes."""
    if models is None:
        models = {role: model_bytes(directory, entry) for role, entry in manifest.artifacts.items()}
    return _gpu_check(directory, manifest, models, say)[0]


def _gpu_check(directory, manifest: Manifest, models: dict[Role, bytes],
               say=None) -> tuple[dict[Role, GpuVerdict], str | None]:
    """(verdicts, why there are none where there are none): :func:`gpu_verdicts`, on
    ``models``, each artifact's checked bytes (:func:`check_files`)."""
    check = manifest.target_spec.gpu_check
    if check is GpuCheck.ONNX_WEBGPU:
        return _onnx_verdicts(Path(directory), manifest, models, say)
    if check is not GpuCheck.LITERT_ACCELERATOR:
        return {}, f"basisnet-deploy has no GPU check for {manifest.target_spec.title} artifacts"
    directory, verdicts, device = Path(directory), {}, True
    for role, entry in manifest.artifacts.items():
        path = directory / entry.file
        if device:
            if say:
                say(f"GPU check: {entry.file} (compile on the GPU, run probes, compare with the CPU)")
            verdict = probe_gpu(path, model=models[role])
            if verdict.status is not GpuStatus.NO_DEVICE:
                verdicts[role] = verdict
                continue
            device = False
            if say:
                say("GPU check: no GPU device here; the GPU column is a static guess")
        verdicts[role] = static_gpu_guess(path, models[role])
    return verdicts, None


def _onnx_verdicts(directory: Path, manifest: Manifest, models: dict[Role, bytes],
                   say) -> tuple[dict[Role, GpuVerdict], str | None]:
    """ONNX: each artifact on onnxruntime's WebGPU EP where it finds a device, else ({}, why)."""
    devices, why = onnx_webgpu_devices()
    verdicts = {}
    for role, entry in manifest.artifacts.items() if devices else ():
        if say:
            say(f"GPU check: {entry.file} on onnxruntime's WebGPU EP (run probes, compare with the CPU)")
        verdicts[role] = probe_onnx_webgpu(directory / entry.file, devices, count=1, model=models[role])
    return verdicts, (None if devices else why)
