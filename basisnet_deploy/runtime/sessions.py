"""Run an exported artifact: LiteRT (TFLite) or ONNX Runtime, addressed by tensor names.

A :class:`Session` is one loaded model with ``run({input name: array}) -> {output name:
array}``. Inputs and outputs are the signature names the manifest records ("image",
"coefficients", "logits"), so callers never depend on tensor order, which converters may flip.

The LiteRT interpreter comes from ``ai_edge_litert``; ``tflite_runtime`` is used only where
ai_edge_litert is missing and it imports (it breaks under NumPy 2). ``tf.lite.Interpreter`` is
deprecated and never used.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import numpy as np

from basisnet_deploy.common.errors import UserError, first_line
from basisnet_deploy.targets.kinds import Runtime
from basisnet_deploy.targets.registry import runtime_of_file


class RuntimeLoadError(UserError):
    pass


def _litert_interpreter_module():
    try:
        from ai_edge_litert import interpreter
        return interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter  # type: ignore[import-not-found]
        return interpreter
    except ImportError as e:
        raise RuntimeLoadError("no LiteRT runtime: pip install ai-edge-litert") from e


class LiteRTSession:
    """One TFLite model in the LiteRT interpreter.

    ``xnnpack=False`` uses the builtin kernels only (no default delegate), which is what
    ``--delegate cpu`` means; ``True`` lets LiteRT apply XNNPACK, its default CPU delegate.
    """

    def __init__(self, model: bytes | str | os.PathLike, num_threads: int = 1, xnnpack: bool = True,
                 name: str = "model", delegate_path: str | None = None):
        mod = _litert_interpreter_module()
        kwargs = {"num_threads": num_threads}
        if delegate_path:  # an external delegate library, e.g. libtensorflowlite_gpu_delegate.so
            kwargs["experimental_delegates"] = [_load_delegate(mod, delegate_path)]
        if not xnnpack:
            kwargs["experimental_op_resolver_type"] = \
                mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self.name = name
        try:
            if isinstance(model, (bytes, bytearray)):
                self.interpreter = mod.Interpreter(model_content=bytes(model), **kwargs)
            else:
                self.interpreter = mod.Interpreter(model_path=str(model), **kwargs)
        except (ValueError, RuntimeError) as e:
            raise RuntimeLoadError(f"{name}: LiteRT cannot load this model ({first_line(e)}); "
                                   "is the file truncated? Re-run basisnet-deploy export") from None
        self._prepare(delegate_path, xnnpack)

    def _prepare(self, delegate_path, xnnpack: bool) -> None:
        # Prepare here, not in the first run(): that is where XNNPACK packs the weights (about
        # 4 ms for a full-size specialist), holding the GIL. A runner that opens sessions off
        # the invoking thread then keeps that work off it.
        try:
            self.interpreter.allocate_tensors()
            self.runner = self.interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as e:  # a kernel or delegate refusing the model
            using = (f"the delegate {delegate_path}" if delegate_path
                     else "XNNPACK" if xnnpack else "the builtin kernels")
            other = ", or try --delegate cpu" if delegate_path or xnnpack else ""
            raise RuntimeLoadError(f"{self.name}: LiteRT cannot prepare this model with {using} "
                                   f"({first_line(e)[:200]}); is the file truncated or modified? "
                                   f"Re-run basisnet-deploy export{other}") from None
        # whether XNNPACK took any of the model's ops (None where not asked, or not known)
        self.delegate_partitions = (_delegate_partitions(self.interpreter)
                                    if xnnpack and not delegate_path else None)
        details = self.runner.get_input_details()
        self.inputs = {k: (tuple(v["shape"]), np.dtype(v["dtype"]), v["quantization"])
                       for k, v in details.items()}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return self.runner(**{k: self.cast(k, v) for k, v in feeds.items()})
        except (ValueError, RuntimeError) as e:  # a kernel failing on these inputs
            raise RuntimeLoadError(f"{self.name}: LiteRT cannot run this model "
                                   f"({first_line(e)[:200]}); re-run basisnet-deploy export") from None

    def cast(self, key, value):
        """``value`` as this input takes it: float rounded onto an int8 input's grid."""
        shape, dtype, (scale, zero) = self.inputs[key]
        value = np.asarray(value)
        if dtype in (np.int8, np.uint8) and value.dtype.kind == "f":
            info = np.iinfo(dtype)
            value = np.clip(np.round(value / scale + zero), info.min, info.max)
        return value.astype(dtype).reshape(shape)


def _delegate_partitions(interpreter) -> int | None:
    """How many parts of the graph a delegate (XNNPACK included) took: each becomes one
    DELEGATE node after ``allocate_tensors``. 0 where it took none (XNNPACK has no 16x8
    kernels, so an int16-activation model runs on the builtin kernels); None where this
    LiteRT cannot list its nodes."""
    try:  # node names only: _get_ops_details() would also read every tensor's details
        native = interpreter._interpreter
        return sum(native.NodeName(i) == "DELEGATE" for i in range(native.NumNodes()))
    except (AttributeError, ValueError, RuntimeError):
        return None


class OnnxSession:
    """One ONNX model in onnxruntime (CPU execution provider unless told otherwise)."""

    def __init__(self, model: bytes | str | os.PathLike, num_threads: int = 1,
                 providers=("CPUExecutionProvider",), name: str = "model", ep_devices=None):
        """``ep_devices``: a plugin execution provider's devices (onnxruntime's WebGPU EP):
        every node on them, none left to the CPU, or a :class:`RuntimeLoadError`."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if ep_devices:
            opts.add_provider_for_devices(list(ep_devices), {})
            opts.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        self.name = name
        try:
            source = bytes(model) if isinstance(model, (bytes, bytearray)) else str(model)
            if ep_devices:  # its refusal is logged to stderr as well as raised: kept out
                from basisnet_deploy.common.quiet import captured_native

                with captured_native():
                    self.session = ort.InferenceSession(source, sess_options=opts)
            else:
                self.session = ort.InferenceSession(source, opts, providers=list(providers))
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            where = " on the GPU (every node on the WebGPU EP)" if ep_devices else ""
            raise RuntimeLoadError(f"{name}: onnxruntime cannot load this model{where} "
                                   f"({first_line(e)[:300]})") from None
        if ep_devices and self.session.get_providers()[0] == "CPUExecutionProvider":
            raise RuntimeLoadError(f"{name}: onnxruntime fell back to the CPU instead of the GPU")
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.inputs = {i.name: i for i in self.session.get_inputs()}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {k: np.asarray(v, np.float32) for k, v in feeds.items()}
        try:
            return dict(zip(self.outputs, self.session.run(self.outputs, feeds)))
        except Exception as e:  # onnxruntime's own Fail / InvalidArgument / RuntimeException
            raise RuntimeLoadError(f"{self.name}: onnxruntime cannot run this model "
                                   f"({first_line(e)[:200]}); re-run basisnet-deploy export") from None


def open_session(path: str | os.PathLike, model: bytes | None = None, **kwargs):
    """A session for ``path`` by its suffix; ``model`` bytes, if given, are used instead."""
    path = Path(path)
    source = model if model is not None else path
    if model is None and not path.is_file():
        raise RuntimeLoadError(f"{path}: missing artifact")
    try:
        runtime = runtime_of_file(path)
    except UserError as e:
        raise RuntimeLoadError(str(e)) from None
    session = LiteRTSession if runtime is Runtime.LITERT else OnnxSession
    return session(source, name=str(path), **kwargs)


def describe(path: str | os.PathLike, model: bytes | None = None) -> dict:
    """Inputs and outputs of an artifact (``model`` bytes, if given, stand for the file):
    name, dtype, shape and quantization."""
    session = open_session(path, model=model)
    if isinstance(session, LiteRTSession):
        def rows(details):
            return [{"name": k, "dtype": np.dtype(v["dtype"]).name,
                     "shape": [int(s) for s in v["shape"]],
                     "quantization": ({"scale": float(v["quantization"][0]),
                                       "zero_point": int(v["quantization"][1])}
                                      if v["quantization"][0] else None)}
                    for k, v in sorted(details.items())]
        return {"inputs": rows(session.runner.get_input_details()),
                "outputs": rows(session.runner.get_output_details())}

    def onnx_rows(items):
        return [{"name": i.name, "dtype": i.type.replace("tensor(", "").rstrip(")"),
                 "shape": list(i.shape), "quantization": None} for i in items]
    return {"inputs": onnx_rows(session.session.get_inputs()),
            "outputs": onnx_rows(session.session.get_outputs())}


def _load_delegate(mod, path):
    """LiteRT's load_delegate, a failure as one RuntimeLoadError. ai-edge-litert's Delegate
    raises in __init__ before it sets its library, and its __del__ then fails too ("Exception
    ignored in ... _library"): that second, meaningless report is dropped."""
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        return mod.load_delegate(str(path))
    except (ValueError, OSError, RuntimeError, AttributeError) as e:  # AttributeError: a missing symbol
        error = RuntimeLoadError(f"{path}: cannot load this delegate library ({first_line(e)})")
    finally:
        gc.collect()  # the half-made Delegate goes now, while its complaint is dropped
        sys.unraisablehook = previous
    raise error


