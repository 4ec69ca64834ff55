"""Backends and delegates: which runtime runs an artifact, on which processor.

A *backend factory* is checked once, up front, in the caller's thread (so a delegate that
cannot load fails fast, exit code 2, with the list of what is available), and then called in
each worker thread to create that thread's own session (GPU delegates must be created on the
thread that uses them).

| delegate | litert | onnxruntime |
| --- | --- | --- |
| cpu | Interpreter, builtin kernels, no default delegate | CPUExecutionProvider |
| xnnpack | Interpreter with XNNPACK (LiteRT's default CPU delegate) | CPUExecutionProvider |
| gpu | CompiledModel with HardwareAccelerator.GPU, or the GPU delegate library given by delegate_path | CUDAExecutionProvider (or ROCm / DirectML, whichever is available) |
| nnapi | Android only: refused elsewhere | NnapiExecutionProvider (Android builds only) |
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import numpy as np

from basisnet_deploy.common.errors import UserError
from basisnet_deploy.runtime.sessions import LiteRTSession, OnnxSession, RuntimeLoadError

DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi")
RUNTIMES = ("litert", "onnxruntime")
ONNX_GPU_PROVIDERS = ("CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider")


class DelegateUnavailable(UserError):
    pass


class CompiledModelSession:
    """One model in LiteRT's CompiledModel API with a hardware accelerator."""

    def __init__(self, model: bytes | str, accelerator: str = "gpu", name: str = "model"):
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator as HA

        accel = {"gpu": HA.GPU, "cpu": HA.CPU, "npu": HA.NPU}[accelerator]
        self.name = name
        try:
            if isinstance(model, (bytes, bytearray)):
                self.model = CompiledModel.from_buffer(bytes(model), hardware_accel=accel)
            else:
                self.model = CompiledModel.from_file(str(model), hardware_accel=accel)
        except RuntimeError as e:
            raise DelegateUnavailable(
                f"{name}: LiteRT could not compile for {accelerator.upper()} "
                f"({str(e).strip().splitlines()[0] if str(e).strip() else 'no details'})") from None
        self.signature = next(iter(self.model.get_signature_list()))
        sig = self.model.get_signature_list()[self.signature]
        self.inputs = {n: self.model.create_input_buffer_by_name(self.signature, n) for n in sig["inputs"]}
        self.outputs = {n: self.model.create_output_buffer_by_name(self.signature, n) for n in sig["outputs"]}
        details = self.model.get_output_tensor_details(self.signature)
        self._out = {n: (int(np.prod(details[n]["shape"])), details[n]["shape"]) for n in sig["outputs"]}

    def run(self, feeds):
        for k, v in feeds.items():
            self.inputs[k].write(np.ascontiguousarray(v, np.float32))
        self.model.run_by_name(self.signature, self.inputs, self.outputs)
        return {n: self.outputs[n].read(count, np.float32).reshape(shape)
                for n, (count, shape) in self._out.items()}


@dataclass
class BackendFactory:
    """Creates sessions for one runtime + delegate; see the module table."""

    runtime: str
    delegate: str
    threads: int = 1
    delegate_path: str | None = None
    fallback_note: str | None = None  # set when --allow-fallback replaced the delegate
    providers: list = field(default_factory=list)

    def __call__(self, path, model: bytes | None = None):
        source = model if model is not None else str(path)
        name = str(path)
        if self.runtime == "onnxruntime":
            return OnnxSession(source, num_threads=self.threads, providers=self.providers, name=name)
        if self.delegate == "gpu" and not self.delegate_path:
            return CompiledModelSession(source, "gpu", name=name)
        return LiteRTSession(source, num_threads=self.threads, xnnpack=self.delegate != "cpu",
                             name=name, delegate_path=self.delegate_path)

    @property
    def processor(self) -> str:
        if self.fallback_note:
            return "CPU (fallback)"
        if self.runtime == "onnxruntime":
            return self.providers[0].replace("ExecutionProvider", " EP")
        return {"cpu": "CPU (builtin kernels)", "xnnpack": "CPU (XNNPACK)", "gpu": "GPU",
                "nnapi": "NNAPI"}[self.delegate]


def available_delegates(runtime: str, probe: str | None = None) -> list[str]:
    if runtime == "onnxruntime":
        import onnxruntime as ort

        have = set(ort.get_available_providers())
        out = ["cpu", "xnnpack"]
        if have & set(ONNX_GPU_PROVIDERS):
            out.append("gpu")
        if "NnapiExecutionProvider" in have:
            out.append("nnapi")
        return out
    return ["cpu", "xnnpack"] + (["gpu"] if probe and _litert_gpu_works(probe) else [])


def _litert_gpu_works(probe: str) -> bool:
    """Whether LiteRT can compile ``probe`` (an artifact) for its GPU accelerator here.

    LiteRT's native code logs every accelerator and plugin it tries to stderr; that is
    silenced (at the file-descriptor level) for the probe, whose verdict we report ourselves.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        CompiledModelSession(probe, "gpu", name="probe")
        return True
    except (DelegateUnavailable, RuntimeLoadError, RuntimeError):
        return False
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def make_factory(runtime: str, delegate: str, threads: int = 1, delegate_path: str | None = None,
                 allow_fallback: bool = False, probe: str | None = None) -> BackendFactory:
    """A checked factory, or :class:`DelegateUnavailable` naming what is available.

    ``probe`` is an artifact path used to try the GPU accelerator once, up front.
    """
    if runtime not in RUNTIMES:
        raise UserError(f"--runtime: unknown {runtime!r}; choose one of {list(RUNTIMES)}")
    if delegate not in DELEGATES:
        raise DelegateUnavailable(f"--delegate: unknown {delegate!r}; choose one of {list(DELEGATES)}")
    reason = None
    providers = ["CPUExecutionProvider"]
    if delegate == "nnapi" and not _on_android():
        reason = ("NNAPI exists only on Android (and is deprecated from Android 15); this is "
                  f"{sys.platform}")
    elif runtime == "onnxruntime" and delegate == "gpu":
        import onnxruntime as ort

        gpu = [p for p in ONNX_GPU_PROVIDERS if p in ort.get_available_providers()]
        if gpu:
            providers = [gpu[0], "CPUExecutionProvider"]
        else:
            reason = ("onnxruntime has no GPU execution provider here (available: "
                      f"{ort.get_available_providers()}); install onnxruntime-gpu on a CUDA machine")
    elif runtime == "litert" and delegate == "gpu":
        if delegate_path:
            if not os.path.isfile(delegate_path):
                reason = f"--delegate-path {delegate_path}: no such file"
            elif probe:
                try:
                    LiteRTSession(probe, delegate_path=delegate_path, name="probe")
                except RuntimeLoadError as e:
                    reason = str(e)
        elif not probe or not _litert_gpu_works(probe):
            reason = ("LiteRT's GPU accelerator could not compile a model here (no usable GPU / "
                      "WebGPU / OpenCL device)")
    if reason:
        if not allow_fallback:
            raise DelegateUnavailable(
                f"--delegate {delegate} ({runtime}): {reason}. Available here: "
                f"{', '.join(available_delegates(runtime, probe))}. Pass --allow-fallback to run on "
                "the CPU instead, and the report will say so")
        return BackendFactory(runtime, "xnnpack", threads, None,
                              fallback_note=f"{delegate} unavailable ({reason}); ran on CPU (XNNPACK)",
                              providers=["CPUExecutionProvider"])
    return BackendFactory(runtime, delegate, threads, delegate_path, providers=providers)


def _on_android() -> bool:
    return hasattr(sys, "getandroidapilevel") or "ANDROID_ROOT" in os.environ


def stage_threads(specialist: int | None = None, cores: int | None = None) -> dict:
    """Threads per stage. The LM and synthesis take one each; the specialist gets the rest of
    the cores (at least one). A count above the machine's cores is a user error."""
    cores = cores or os.cpu_count() or 1
    if specialist is not None and not 1 <= specialist <= cores:
        raise UserError(f"--threads {specialist}: this machine has {cores} cores; choose 1 to {cores}")
    return {"lightweight": 1, "synthesis": 1, "specialist": specialist or max(1, cores - 2),
            "cores": cores}
