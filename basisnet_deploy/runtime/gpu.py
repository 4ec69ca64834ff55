"""LiteRT's GPU accelerator: whether an artifact runs on it, and sessions that run there.

Where a device is present, every verdict here comes from the accelerator itself:
:func:`probe_gpu` compiles the artifact for the GPU in a child process, runs probe inputs
there, and compares the outputs with the CPU's (XNNPACK, in this process). The child keeps
three things out of the caller: a shader the driver rejects (Dawn logs a validation error and
the invalid pipeline still runs, returning garbage), native log noise, and a crash.

:class:`GpuContext` holds one LiteRT environment (one WebGPU device) for every session it
creates: the first compile builds the device and its shaders (about 1-4 s on a software GPU),
later compiles of models with the same shapes reuse the pipeline cache (tens of ms).

A software GPU for machines without one: Debian's ``chromium`` package ships Google's
SwiftShader Vulkan driver; with ``libvulkan1`` installed and ``VK_ICD_FILENAMES`` pointing at
:data:`SWIFTSHADER_ICD`, the accelerator selects "SwiftShader Device (Subzero)". Its op
support and the shaders it generates (checked by Dawn's WGSL validation) are the real
accelerator's; its precision is not a GPU's (it computes in float32, a phone's GPU often in
float16), nor is a GPU driver's shader compiler, nor its speed.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from basisnet_deploy.common.answers import same_answer
from basisnet_deploy.common.errors import UserError, first_line
from basisnet_deploy.common.quiet import CapturedText, captured_native

SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json"
# Largest |GPU - CPU| relative to the CPU's largest |output| that still counts as computing
# right. A GPU computing in float16 stays near 1e-3 on these models, and a dynamic-range
# artifact (int8 weights: the CPU quantizes each frame's activations, the GPU computes in
# float) near 1e-2; a miscompiled shader gives ~1 (outputs unrelated to the CPU's) or NaN.
GPU_TOLERANCE = 0.05
# The export that runs on each runtime's GPU path (docs/gpu.md), for error messages.
GPU_EXPORT_FIX = {"litert": "export a GPU-ready specialist with --quantize float16",
                  "onnxruntime": "export with --quantize float32 (the ONNX export the WebGPU EP runs)"}
PROBE_COUNT = 3
PROBE_TIMEOUT_S = 600

_ADAPTER = re.compile(r"Selected adapter: ([^,\n]+)(?:,[^\n]*adapterType=([^\n]+))?")
_NO_DEVICE = re.compile(r"No adapters found|Failed to initialize WebGPU environment|"
                        r"Failed to get or create delegate WebGPU environment")
_SHADER_ERROR = re.compile(r"Validation error[^\n]*|Error while parsing WGSL[^\n]*|"
                           r"Invalid ShaderModule[^\n]*|Invalid ComputePipeline[^\n]*")
_KERNEL_ERROR = re.compile(r"Failed to initialize kernel[^\n]*|Failed to build[^\n]*")
_UNSUPPORTED_HEAD = "Following operations are not supported by GPU delegate:"


class GpuStatus(str, enum.Enum):
    RUNS = "runs"  # compiled fully on the GPU and computes what the CPU computes
    REFUSED = "refused"  # the accelerator does not compile it (an op or a kernel)
    MISCOMPUTES = "miscomputes"  # compiles, but a shader failed or the outputs differ
    NO_DEVICE = "no-device"  # no GPU the accelerator can use here
    STATIC_GUESS = "static-guess"  # no device: what this kind of artifact did on one, not a run


@dataclass
class GpuVerdict:
    """What LiteRT's GPU accelerator made of one artifact."""

    artifact: str
    status: GpuStatus
    adapter: str | None = None  # e.g. "SwiftShader Device (Subzero) (CPU / Software)"
    reason: str | None = None  # one line: the first unsupported op, the shader error, ...
    unsupported_ops: list[str] = field(default_factory=list)  # "OP: why", as LiteRT says it
    max_rel: float | None = None  # max |GPU - CPU| / max |CPU| over the probes
    top1_agreement: float | None = None  # GPU's argmax == CPU's, over the probes (logits)
    probes: int = 0
    compile_ms: float | None = None  # the child's first compile: device + shaders
    source: str = "LiteRT GPU accelerator (compiled and run, compared with the CPU)"

    @property
    def ok(self) -> bool:
        return self.status is GpuStatus.RUNS

    def summary(self) -> str:
        """A few words for a table: "runs", "refused: STRIDED_SLICE: ...", ..."""
        if self.status is GpuStatus.RUNS:
            return f"runs (max rel err vs CPU {self.max_rel:.1e})"
        if self.status is GpuStatus.STATIC_GUESS:
            return f"no GPU here to run it; static guess: {self.reason}"
        return f"{self.status.value}: {self.reason}"

    def to_json(self) -> dict:
        out = asdict(self)
        out["status"] = self.status.value
        if out["max_rel"] is not None and not np.isfinite(out["max_rel"]):
            out["max_rel"] = None  # NaN or infinite outputs: JSON has no number for them
        return out

    @classmethod
    def from_json(cls, data: dict) -> "GpuVerdict":
        return cls(**{**data, "status": GpuStatus(data["status"])})


class GpuUnavailable(UserError):
    """The GPU cannot run what was asked: no device, or an artifact it refuses or miscomputes."""


def no_device_fix() -> str:
    """How to get a GPU the accelerator can use, for an error message."""
    if os.path.isfile(SWIFTSHADER_ICD) and not os.environ.get("VK_ICD_FILENAMES"):
        return (f"for a software GPU (SwiftShader: correct but slow) set "
                f"VK_ICD_FILENAMES={SWIFTSHADER_ICD}")
    return ("run on a machine with a Vulkan or OpenCL GPU (Linux: libvulkan1 and the GPU's Vulkan "
            "driver; a software GPU: Debian's chromium package ships SwiftShader)")


def probe_inputs(shapes: dict[str, tuple], count: int = PROBE_COUNT, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Seeded float32 probe inputs, {input name: shape} each: images uniform in [0, 1),
    coefficient rows that sum to one (as the LM's softmax does)."""
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(count):
        feed = {name: rng.random(shape, dtype=np.float32) for name, shape in shapes.items()}
        if "coefficients" in feed:
            feed["coefficients"] /= feed["coefficients"].sum(axis=-1, keepdims=True)
        feeds.append(feed)
    return feeds


def probe_feeds(model, count: int = PROBE_COUNT, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """:func:`probe_inputs` for a CPU :class:`~basisnet_deploy.runtime.sessions.LiteRTSession`,
    each cast as its inputs take them (rounded onto an int8 input's grid)."""
    shapes = {name: shape for name, (shape, _dtype, _quant) in model.inputs.items()}
    return [{name: model.cast(name, x) for name, x in feed.items()}
            for feed in probe_inputs(shapes, count, seed)]


def probe_gpu(path: str | os.PathLike, feeds: list[dict[str, np.ndarray]] | None = None,
              model: bytes | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> GpuVerdict:
    """Compile ``path`` (or ``model`` bytes standing for it) on the GPU in a child process,
    run ``feeds`` (default: :func:`probe_feeds`) there and on the CPU here, and compare."""
    from basisnet_deploy.runtime.sessions import LiteRTSession

    name = str(path)
    data = model if model is not None else Path(path).read_bytes()
    cpu = LiteRTSession(data, xnnpack=True, name=name)
    feeds = feeds if feeds is not None else probe_feeds(cpu)
    with tempfile.TemporaryDirectory(prefix="basisnet-gpu-") as tmp:
        tmp = Path(tmp)
        (tmp / "model.tflite").write_bytes(data)
        np.savez(tmp / "feeds.npz", **{f"{i}/{k}": v for i, f in enumerate(feeds) for k, v in f.items()})
        log, code = _run_child(tmp, timeout_s)
        verdict = _verdict_from_log(name, log, code)
        if verdict.status is not GpuStatus.RUNS:
            return verdict
        with np.load(tmp / "outputs.npz") as out:
            gpu = [{k.split("/", 1)[1]: out[k] for k in out.files if k.startswith(f"{i}/")}
                   for i in range(len(feeds))]
    return _compare(verdict, [cpu.run(f) for f in feeds], gpu)


def _run_child(tmp: Path, timeout_s: float) -> tuple[str, int | None]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    env.setdefault("XDG_RUNTIME_DIR", str(tmp))
    cmd = [sys.executable, "-m", "basisnet_deploy.runtime.gpu_probe", str(tmp)]
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                              timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        return (e.output or b"").decode("utf-8", "replace") + f"\nTIMEOUT after {timeout_s:.0f} s", None
    return done.stdout.decode("utf-8", "replace"), done.returncode


def _verdict_from_log(name: str, log: str, code: int | None) -> GpuVerdict:
    """The verdict the child's log and exit code give, before outputs are compared."""
    adapter = _adapter(log)
    info = _child_info(log)
    base = dict(artifact=name, adapter=adapter, compile_ms=info.get("compile_ms"))
    if _NO_DEVICE.search(log):
        return GpuVerdict(status=GpuStatus.NO_DEVICE, reason="no GPU device the accelerator can use",
                          **base)
    unsupported = unsupported_ops(log)
    if unsupported:
        return GpuVerdict(status=GpuStatus.REFUSED, reason=f"not supported on the GPU: {unsupported[0]}",
                          unsupported_ops=unsupported, **base)
    kernel = _KERNEL_ERROR.search(log)
    if code is None:
        return GpuVerdict(status=GpuStatus.REFUSED, reason=log.strip().splitlines()[-1], **base)
    if code != 0 or not info.get("ran"):
        why = kernel.group(0) if kernel else _last_error(log) or (
            f"the compile or run crashed (exit code {code})" if code < 0 or code > 3
            else "the accelerator could not compile it")
        return GpuVerdict(status=GpuStatus.REFUSED, reason=why.strip(), **base)
    shader = _SHADER_ERROR.search(log)
    if shader:
        return GpuVerdict(status=GpuStatus.MISCOMPUTES, reason=f"a shader failed: {shader.group(0).strip()}",
                          **base)
    return GpuVerdict(status=GpuStatus.RUNS, **base)


def relative_error(ref, got) -> float:
    """max |got - ref| / max |ref|; infinite where ``got`` holds NaN or infinities (a miscompiled
    shader), so that a larger-is-worse comparison never takes it for agreement."""
    r = np.asarray(ref, np.float32).ravel()
    g = np.asarray(got, np.float32).ravel()
    rel = float(np.max(np.abs(g - r)) / max(float(np.max(np.abs(r))), 1e-12))
    return rel if np.isfinite(rel) and np.all(np.isfinite(g)) else float("inf")


def _compare(verdict: GpuVerdict, cpu: list[dict], gpu: list[dict]) -> GpuVerdict:
    worst, agree, scored = 0.0, 0, 0
    for ref, got in zip(cpu, gpu):
        for key, r in ref.items():
            worst = max(worst, relative_error(r, got[key]))
            if key == "logits":
                agree += same_answer(r, got[key])
                scored += 1
    verdict.max_rel = worst
    verdict.top1_agreement = agree / scored if scored else None
    verdict.probes = len(cpu)
    if not worst <= GPU_TOLERANCE:
        verdict.status = GpuStatus.MISCOMPUTES
        verdict.reason = (f"outputs differ from the CPU's (max rel err {worst:.2g}, tolerance "
                          f"{GPU_TOLERANCE:g})")
    return verdict


def unsupported_ops(log: str) -> list[str]:
    """The "OP: why" lines LiteRT prints under "Following operations are not supported"."""
    if _UNSUPPORTED_HEAD not in log:
        return []
    ops = []
    for line in log.split(_UNSUPPORTED_HEAD, 1)[1].splitlines()[1:]:
        line = line.strip()
        if not re.match(r"^[A-Z][A-Z0-9_]+: ", line):
            break
        ops.append(line)
    return ops


def _adapter(log: str) -> str | None:
    m = _ADAPTER.search(log)
    if not m:
        return None
    return m.group(1).strip() + (f" ({m.group(2).strip()})" if m.group(2) else "")


def _child_info(log: str) -> dict:
    for line in log.splitlines():
        if line.startswith("GPU_PROBE "):
            return json.loads(line[len("GPU_PROBE "):])
    return {}


def _last_error(log: str) -> str | None:
    lines = [ln for ln in log.splitlines() if "rror" in ln and "NPU" not in ln
             and "compiler_plugin" not in ln and "Could not load" not in ln]
    return lines[-1] if lines else None


# ---------------------------------------------------------------------------------------
# Without a device: a static guess

# What LiteRT's GPU accelerator (ai-edge-litert 2.3, WebGPU over Vulkan on SwiftShader) did with
# each kind of artifact this toolchain writes, as (kind, status, what happened). Where no GPU
# is present these are the guess, and are reported as a guess.
MEASURED_KINDS = {
    "static-int8": (GpuStatus.MISCOMPUTES, "int8 activations: the accelerator generates a shader "
                    "the driver rejects, and the invalid pipeline returns garbage"),
    "static-int16x8": (GpuStatus.REFUSED, "int16 activations: 'Tensor type(INT16) is not "
                       "supported'"),
    "weight-only-int8": (GpuStatus.REFUSED, "int8 weights behind DEQUANTIZE: 'Failed to initialize "
                         "kernel'"),
    "dynamic-range": (GpuStatus.RUNS, "int8 weights with float activations: computed in float"),
    "float16": (GpuStatus.RUNS, "float16 weights: the accelerator's native form"),
    "float32": (GpuStatus.RUNS, "float32"),
}


def artifact_kind(path: str | os.PathLike, model: bytes | None = None) -> str:
    """Which row of :data:`MEASURED_KINDS` a .tflite (``path``, or ``model`` bytes standing
    for it) is, read from its ops and tensors."""
    from basisnet_deploy.runtime.sessions import LiteRTSession

    source = model if model is not None else str(path)
    interpreter = LiteRTSession(source, xnnpack=False, name=str(path)).interpreter
    ops = interpreter._get_ops_details()  # no public listing of ops in ai-edge-litert 2.3
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    names = {op["op_name"] for op in ops}
    if any(np.dtype(t["dtype"]) == np.int16 for t in tensors.values()):
        return "static-int16x8"
    int8_input = any(np.dtype(d["dtype"]) == np.int8 for d in interpreter.get_input_details())
    if "QUANTIZE" in names or int8_input:
        return "static-int8"
    dequantized = {np.dtype(tensors[op["inputs"][0]]["dtype"]).name for op in ops
                   if op["op_name"] == "DEQUANTIZE"}
    if "int8" in dequantized:
        return "weight-only-int8"
    if any(np.dtype(t["dtype"]) == np.int8 for t in tensors.values()):
        return "dynamic-range"
    return "float16" if "float16" in dequantized else "float32"


def static_gpu_guess(path: str | os.PathLike, model: bytes | None = None) -> GpuVerdict:
    """No GPU here to run ``path`` (or ``model`` bytes standing for it) on: what the
    accelerator did with its kind of artifact (:data:`MEASURED_KINDS`), labelled a guess."""
    kind = artifact_kind(path, model)
    expected, what = MEASURED_KINDS[kind]
    return GpuVerdict(artifact=str(path), status=GpuStatus.STATIC_GUESS,
                      reason=f"{'runs' if expected is GpuStatus.RUNS else expected.value} ({what})",
                      source=f"static guess from the artifact's kind ({kind}); no GPU here to run it")


# ---------------------------------------------------------------------------------------
# Sessions on the GPU, for the runner


class GpuContext:
    """One LiteRT environment (one GPU device) shared by every session it creates, so that a
    re-synthesized template compiles from the device's pipeline cache. :meth:`close` releases
    the sessions before the environment (the other order crashes at exit)."""

    def __init__(self):
        self._env = None
        self._sessions: list[GpuSession] = []
        self._lock = threading.Lock()  # the runner's threads make and free sessions
        self.adapter: str | None = None

    def environment(self):
        with self._lock:
            return self._environment()

    def _environment(self):
        if self._env is None:
            import ai_edge_litert
            from ai_edge_litert.environment import Environment, EnvironmentOptions

            self._env = Environment.create(options=EnvironmentOptions(
                runtime_path=os.path.dirname(os.path.abspath(ai_edge_litert.__file__))))
        return self._env

    def session(self, model: bytes | str, name: str = "model") -> "GpuSession":
        session = GpuSession(model, self, name)
        with self._lock:
            self._sessions.append(session)
        return session

    def release(self, session: "GpuSession") -> None:
        with self._lock:
            if session in self._sessions:
                self._sessions.remove(session)
        session.close()

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
            for session in sessions:
                session.close()
            self._env = None


class GpuSession:
    """One model compiled for LiteRT's GPU accelerator (all ops on the GPU, or an error)."""

    def __init__(self, model: bytes | str, context: GpuContext, name: str = "model"):
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import Options

        self.name = name
        options = Options(hardware_accelerators=HardwareAccelerator.GPU)
        started = time.perf_counter()
        # The compile log names a refused op or a rejected shader. Capturing it redirects the
        # process's stderr, so only on the main thread: a worker's compile (the runner's
        # synthesis stage) would swallow what the main thread prints meanwhile; its artifact
        # was checked up front, and the CLI filters LiteRT's log lines anyway.
        capture = captured_native() if threading.current_thread() is threading.main_thread() \
            else contextlib.nullcontext(CapturedText())
        with capture as log:
            try:
                if isinstance(model, (bytes, bytearray)):
                    self.model = CompiledModel.from_buffer(bytes(model), environment=context.environment(),
                                                           options=options)
                else:
                    self.model = CompiledModel.from_file(str(model), environment=context.environment(),
                                                         options=options)
            except RuntimeError:
                self.model = None
        self.compile_ms = (time.perf_counter() - started) * 1000
        context.adapter = context.adapter or _adapter(log.text)
        shader = _SHADER_ERROR.search(log.text)
        if self.model is None or shader or not self.model.is_fully_accelerated():
            verdict = _verdict_from_log(name, log.text, 1 if self.model is None else 0)
            why = (f"a shader failed: {shader.group(0).strip()}" if shader else verdict.reason
                   if self.model is None else "not every op runs on the GPU")
            self.close()
            fix = no_device_fix() if verdict.status is GpuStatus.NO_DEVICE else GPU_EXPORT_FIX["litert"]
            raise GpuUnavailable(f"{name}: the GPU cannot run it ({why}); {fix} (docs/gpu.md)")
        self.signature = next(iter(self.model.get_signature_list()))
        sig = self.model.get_signature_list()[self.signature]
        self.inputs = {n: self.model.create_input_buffer_by_name(self.signature, n) for n in sig["inputs"]}
        self.outputs = {n: self.model.create_output_buffer_by_name(self.signature, n) for n in sig["outputs"]}
        details = self.model.get_output_tensor_details(self.signature)
        self._out = {n: (int(np.prod(details[n]["shape"])), tuple(details[n]["shape"]))
                     for n in sig["outputs"]}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for k, v in feeds.items():
            self.inputs[k].write(np.ascontiguousarray(v, np.float32))
        self.model.run_by_name(self.signature, self.inputs, self.outputs)
        return {n: self.outputs[n].read(count, np.float32).reshape(shape)
                for n, (count, shape) in self._out.items()}

    def close(self) -> None:
        self.inputs, self.outputs = {}, {}
        if getattr(self, "model", None) is not None:
            self.model.close()
            self.model = None


# ---------------------------------------------------------------------------------------
# onnxruntime: the WebGPU execution provider (the onnxruntime-ep-webgpu plugin, "[gpu]" extra)

WEBGPU_EP = "WebGpuExecutionProvider"
# onnxruntime finds GPUs by scanning /sys/class/drm; with none there (a software GPU, a
# container) the plugin offers itself only when this is "1" (read when it is registered).
ALLOW_SOFTWARE_ADAPTER = "ORT_WEBGPU_EP_ALLOW_SOFTWARE_ADAPTER"
_ORT_PLUGIN_NAME = "basisnet-webgpu"


def onnx_webgpu_devices() -> tuple[list, str | None]:
    """(onnxruntime's WebGPU EP devices, None) or ([], why there are none).

    The plugin is registered with onnxruntime once per process. Where ``VK_ICD_FILENAMES``
    names SwiftShader the user has chosen a software GPU, so it is allowed to be used."""
    try:
        import onnxruntime_ep_webgpu as plugin
    except ImportError:
        return [], ("onnxruntime has no GPU execution provider here: pip install "
                    "'basisnet-deploy[gpu]' (onnxruntime-ep-webgpu), or onnxruntime-gpu on a CUDA machine")
    import onnxruntime as ort

    if "swiftshader" in os.environ.get("VK_ICD_FILENAMES", "").lower():
        os.environ.setdefault(ALLOW_SOFTWARE_ADAPTER, "1")
    devices = [d for d in ort.get_ep_devices() if d.ep_name == plugin.get_ep_name()]
    if not devices:  # not registered yet, or registered when no device was allowed: (re)register
        try:
            with contextlib.suppress(Exception):
                ort.unregister_execution_provider_library(_ORT_PLUGIN_NAME)
            with captured_native():  # its notice that a software adapter is allowed
                ort.register_execution_provider_library(_ORT_PLUGIN_NAME, plugin.get_library_path())
        except Exception as e:  # onnxruntime's own error types
            return [], f"onnxruntime could not load its WebGPU plugin ({first_line(e)})"
        devices = [d for d in ort.get_ep_devices() if d.ep_name == plugin.get_ep_name()]
    if not devices:
        return [], (f"onnxruntime's WebGPU EP found no GPU device here ({no_device_fix()}; for a "
                    f"software GPU also set {ALLOW_SOFTWARE_ADAPTER}=1)")
    return devices, None


def probe_onnx_webgpu(path: str | os.PathLike, devices: list, count: int = PROBE_COUNT,
                      model: bytes | None = None) -> GpuVerdict:
    """Open ``path`` (or ``model`` bytes standing for it) on the WebGPU EP with every node on
    it (no CPU fallback), run probe inputs and compare with the CPU EP, in this process
    (onnxruntime refuses, it does not miscompile silently, and its logs are its own)."""
    from basisnet_deploy.runtime.sessions import OnnxSession, RuntimeLoadError

    name = str(path)
    source = model if model is not None else path
    cpu = OnnxSession(source, name=name)
    try:
        started = time.perf_counter()
        gpu = OnnxSession(source, name=name, ep_devices=devices)
        compile_ms = round((time.perf_counter() - started) * 1000, 1)
    except RuntimeLoadError as e:
        return GpuVerdict(artifact=name, status=GpuStatus.REFUSED, reason=str(e),
                          source="onnxruntime WebGPU EP (CPU fallback disabled)")
    feeds = probe_inputs({key: tuple(d if isinstance(d, int) else 1 for d in meta.shape)
                          for key, meta in cpu.inputs.items()}, count)
    software = os.environ.get(ALLOW_SOFTWARE_ADAPTER) == "1"
    adapter = "WebGPU (onnxruntime EP" + (", software adapter allowed)" if software else ")")
    verdict = GpuVerdict(artifact=name, status=GpuStatus.RUNS, adapter=adapter,
                         compile_ms=compile_ms, source="onnxruntime WebGPU EP (CPU fallback disabled), "
                         "compared with the CPU EP")
    return _compare(verdict, [cpu.run(f) for f in feeds], [gpu.run(f) for f in feeds])
