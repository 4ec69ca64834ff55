"""Backends and delegates: which runtime runs an artifact, on which processor.

A *backend factory* is checked once, up front, in the caller's thread (so a delegate that
cannot load fails fast, exit code 2, with the list of what is available), and then called in
each worker thread to create that thread's own session (GPU delegates must be created on the
thread that uses them).

| delegate | litert | onnxruntime |
| --- | --- | --- |
| cpu | Interpreter, builtin kernels, no default delegate | CPUExecutionProvider |
| xnnpack | Interpreter with XNNPACK (LiteRT's default CPU delegate) | XnnpackExecutionProvider (then the CPU EP for the nodes it does not take) where this onnxruntime build has it; else the CPU EP, and the processor says so (pip's builds have no XNNPACK EP) |
| gpu | CompiledModel on LiteRT's GPU accelerator (runtime/gpu.py: every op on the GPU, checked against the CPU up front), or the GPU delegate library given by delegate_path | CUDAExecutionProvider (or ROCm / DirectML, whichever is available), else the WebGPU EP plugin (onnxruntime-ep-webgpu: every node on it, checked against the CPU up front) |
| nnapi | Android only: refused elsewhere | NnapiExecutionProvider (Android builds only) |
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field


from basisnet_deploy.common.errors import UserError
from basisnet_deploy.runtime.gpu import (GPU_EXPORT_FIX, WEBGPU_EP, GpuContext, GpuStatus, GpuVerdict, no_device_fix,
                                         onnx_webgpu_devices, probe_gpu, probe_onnx_webgpu)
from basisnet_deploy.runtime.sessions import LiteRTSession, OnnxSession, RuntimeLoadError

DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi")
RUNTIMES = ("litert", "onnxruntime")
ONNX_GPU_PROVIDERS = ("CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider")
ONNX_XNNPACK_EP = "XnnpackExecutionProvider"  # in onnxruntime builds made with --use_xnnpack only


class DelegateUnavailable(UserError):
    pass


@dataclass
class BackendFactory:
    """Creates sessions for one runtime + delegate; see the module table."""

    runtime: str
    delegate: str
    threads: int = 1
    delegate_path: str | None = None
    # why the delegate asked for was replaced by the CPU (--allow-fallback), else None
    fallback_reason: str | None = None
    providers: list = field(default_factory=list)  # onnxruntime: names, or (name, options) pairs
    gpu_verdict: GpuVerdict | None = None  # the up-front check of the artifact the GPU runs
    gpu: GpuContext | None = field(default=None, repr=False)  # LiteRT GPU: one device for all sessions
    ep_devices: list | None = field(default=None, repr=False)  # onnxruntime: the WebGPU EP's devices
    # LiteRT with XNNPACK: whether it took any of a session's ops, for the sessions made so far
    xnnpack_took: set = field(default_factory=set, repr=False)
    asked: str | None = None  # "xnnpack" where onnxruntime lacks its EP and the CPU EP runs

    def __call__(self, path, model: bytes | None = None):
        source = model if model is not None else str(path)
        name = str(path)
        if self.runtime == "onnxruntime":
            return OnnxSession(source, num_threads=self.threads, providers=self.providers, name=name,
                               ep_devices=self.ep_devices)
        if self.delegate == "gpu" and not self.delegate_path:
            if self.gpu is None:
                self.gpu = GpuContext()
            return self.gpu.session(source, name=name)
        session = LiteRTSession(source, num_threads=self.threads, xnnpack=self.delegate != "cpu",
                                name=name, delegate_path=self.delegate_path)
        if self.delegate == "xnnpack" and session.delegate_partitions is not None:
            self.xnnpack_took.add(session.delegate_partitions > 0)
        return session

    @property
    def processor(self) -> str:
        """Where this factory's sessions run; for XNNPACK, read after the sessions are made
        (whether it took a model's ops is known once the model is prepared)."""
        return self._sessions_run_on() if not self.fallback_reason else "CPU (fallback)"

    @property
    def fallback_note(self) -> str | None:
        """Why the delegate was replaced and what ran instead (read after the sessions are
        made, it says whether XNNPACK took the models), or None without a fallback."""
        if not self.fallback_reason:
            return None
        return f"{self.fallback_reason}; ran on {self._sessions_run_on()}"

    def _sessions_run_on(self) -> str:
        if self.runtime == "onnxruntime":
            first = self.providers[0] if isinstance(self.providers[0], str) else self.providers[0][0]
            if first == ONNX_XNNPACK_EP:
                return "CPU: XNNPACK EP (and the CPU EP for the nodes it does not take)"
            ep = first.replace("ExecutionProvider", " EP")
            if self.asked == "xnnpack":  # make_factory: this onnxruntime has no XNNPACK EP
                return f"{ep} (this onnxruntime build has no {ONNX_XNNPACK_EP})"
            return f"GPU: {ep}" if first == WEBGPU_EP else ep
        if self.delegate == "gpu" and self.gpu_verdict and self.gpu_verdict.adapter:
            return f"GPU: {self.gpu_verdict.adapter}"
        if self.delegate == "xnnpack" and False in self.xnnpack_took:
            return ("CPU (XNNPACK, and builtin kernels for a model it took none of)" if True in self.xnnpack_took
                    else "CPU (builtin kernels: XNNPACK took none of the ops)")
        return {"cpu": "CPU (builtin kernels)", "xnnpack": "CPU (XNNPACK)", "gpu": "GPU",
                "nnapi": "NNAPI"}[self.delegate]

    def release(self, session) -> None:
        """Free one session this factory made (GPU sessions hold device memory)."""
        if self.gpu is not None:
            self.gpu.release(session)

    def close(self) -> None:
        """Free the sessions and the GPU device; the factory makes new ones if called again."""
        if self.gpu is not None:
            self.gpu.close()
            self.gpu = None


def available_delegates(runtime: str, probe: str | None = None, probe_model: bytes | None = None) -> list[str]:
    if runtime == "onnxruntime":
        import onnxruntime as ort

        have = set(ort.get_available_providers())
        out = ["cpu"] + (["xnnpack"] if ONNX_XNNPACK_EP in have else [])
        if have & set(ONNX_GPU_PROVIDERS) or onnx_webgpu_devices()[0]:
            out.append("gpu")
        if "NnapiExecutionProvider" in have:
            out.append("nnapi")
        return out
    verdict = _litert_gpu_verdict(probe, probe_model)
    return ["cpu", "xnnpack"] + (["gpu"] if verdict and verdict.ok else [])


def _litert_gpu_verdict(probe: str | None, probe_model: bytes | None = None) -> GpuVerdict | None:
    """The accelerator's verdict on ``probe`` (the artifact the GPU will run), or None."""
    return probe_gpu(probe, model=probe_model) if probe else None


def make_factory(runtime: str, delegate: str, threads: int = 1, delegate_path: str | None = None,
                 allow_fallback: bool = False, probe: str | None = None,
                 probe_model: bytes | None = None) -> BackendFactory:
    """A checked factory, or :class:`DelegateUnavailable` naming what is available.

    ``probe`` is the artifact the GPU will run: LiteRT's GPU accelerator compiles it and runs
    probe inputs once, up front, against the CPU (runtime/gpu.py); an artifact it refuses or
    miscomputes is an error naming the artifact and the op or shader, never numbers.
    ``probe_model``: its bytes as checked against the manifest (an export's artifact), run in
    place of the file ``probe`` names.
    """
    if runtime not in RUNTIMES:
        raise UserError(f"--runtime: unknown {runtime!r}; choose one of {list(RUNTIMES)}")
    if delegate not in DELEGATES:
        raise DelegateUnavailable(f"--delegate: unknown {delegate!r}; choose one of {list(DELEGATES)}")
    if delegate_path:
        _check_delegate_library(delegate_path, runtime)
    reason, verdict, ep_devices = None, None, None
    providers = ["CPUExecutionProvider"]
    if delegate == "nnapi" and not _on_android():
        reason = ("NNAPI exists only on Android (and is deprecated from Android 15); this is "
                  f"{sys.platform}")
    elif runtime == "onnxruntime" and delegate == "xnnpack":
        import onnxruntime as ort

        have = ort.get_available_providers()
        if ONNX_XNNPACK_EP not in have:
            # xnnpack is every command's default, and pip's onnxruntime builds lack its EP: the
            # CPU EP runs, never labelled XNNPACK (the processor says which EP ran, and why).
            return BackendFactory(runtime, "cpu", threads, None, providers=["CPUExecutionProvider"],
                                  asked="xnnpack")
        # XNNPACK's own thread pool; the nodes it does not take run on the CPU EP
        providers = [(ONNX_XNNPACK_EP, {"intra_op_num_threads": str(threads)}), "CPUExecutionProvider"]
    elif runtime == "onnxruntime" and delegate == "gpu":
        import onnxruntime as ort

        gpu = [p for p in ONNX_GPU_PROVIDERS if p in ort.get_available_providers()]
        if gpu:
            providers = [gpu[0], "CPUExecutionProvider"]
        else:
            ep_devices, reason = onnx_webgpu_devices()
            if ep_devices:
                verdict = (probe_onnx_webgpu(probe, ep_devices, count=1, model=probe_model)
                           if probe else None)
                reason = _gpu_refusal(verdict)
                providers = [WEBGPU_EP]
    elif runtime == "litert" and delegate == "gpu":
        if delegate_path:
            if probe:
                try:
                    LiteRTSession(probe_model if probe_model is not None else probe,
                                  delegate_path=delegate_path, name="probe")
                except RuntimeLoadError as e:
                    reason = str(e)
        else:
            verdict = _litert_gpu_verdict(probe, probe_model)
            reason = _gpu_refusal(verdict)
    if reason:
        if not allow_fallback:
            available = (available_delegates(runtime) if runtime == "onnxruntime"
                         else ["cpu", "xnnpack"] + (["gpu"] if verdict and verdict.ok else []))
            raise DelegateUnavailable(
                f"--delegate {delegate} ({runtime}): {reason}. Available here: "
                f"{', '.join(available)}. Pass --allow-fallback to run on "
                "the CPU instead, and the report will say so")
        return BackendFactory(runtime, "xnnpack", threads, None,
                              fallback_reason=f"{delegate} unavailable ({reason})",
                              providers=["CPUExecutionProvider"], asked=delegate)
    return BackendFactory(runtime, delegate, threads, delegate_path, providers=providers,
                          gpu_verdict=verdict, ep_devices=ep_devices if providers == [WEBGPU_EP] else None)


def _check_delegate_library(path: str, runtime: str) -> None:
    """--delegate-path names a shared library LiteRT can load: refused up front, by name (a
    failed load_delegate also leaves ai-edge-litert's half-made Delegate to complain at exit)."""
    if runtime != "litert":
        raise UserError(f"--delegate-path {path}: an external delegate is a LiteRT library; "
                        f"--runtime {runtime} does not load one")
    if not os.path.isfile(path):
        raise UserError(f"--delegate-path {path}: no such file; give the delegate's .so")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"\x7fELF":
        raise UserError(f"--delegate-path {path}: not a shared library (no ELF header); give the "
                        "delegate's .so, e.g. libtensorflowlite_gpu_delegate.so")


def _gpu_refusal(verdict: GpuVerdict | None) -> str | None:
    """Why the GPU cannot run the probed artifact, with the fix; None when it can."""
    if verdict is None:
        return "no artifact to try on the GPU"
    if verdict.ok:
        return None
    if verdict.status is GpuStatus.NO_DEVICE:
        return f"LiteRT's GPU accelerator found no GPU device here ({no_device_fix()})"
    runtime = "onnxruntime" if str(verdict.artifact).endswith(".onnx") else "litert"
    return f"{verdict.artifact}: the GPU {verdict.summary()}; {GPU_EXPORT_FIX[runtime]}"


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
