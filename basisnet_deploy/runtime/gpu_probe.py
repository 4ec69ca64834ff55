"""The child process of :func:`basisnet_deploy.runtime.gpu.probe_gpu`.

``python -m basisnet_deploy.runtime.gpu_probe DIR``: compiles ``DIR/model.tflite`` for LiteRT's
GPU accelerator alone (no CPU fallback), runs each feed of ``DIR/feeds.npz`` (keys
``"<i>/<input name>"``) and writes ``DIR/outputs.npz`` (``"<i>/<output name>"``). It prints one
``GPU_PROBE {json}`` line; everything else on its stdout/stderr is LiteRT's own log, which the
parent reads for the adapter, unsupported ops and shader errors. It leaves with ``os._exit``:
a model whose shaders failed can crash in its destructors, after the answer is written.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def _say(**info) -> None:
    print("GPU_PROBE " + json.dumps(info), flush=True)


def main(directory: str) -> int:
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator

    folder = Path(directory)
    started = time.perf_counter()
    model = CompiledModel.from_file(str(folder / "model.tflite"), hardware_accel=HardwareAccelerator.GPU)
    compile_ms = round((time.perf_counter() - started) * 1000, 1)
    if not model.is_fully_accelerated():
        _say(compile_ms=compile_ms, ran=False, fully_accelerated=False)
        return 3
    signature = next(iter(model.get_signature_list()))
    names = model.get_signature_list()[signature]
    inputs = model.get_input_tensor_details(signature)
    outputs = model.get_output_tensor_details(signature)
    in_buf = {n: model.create_input_buffer_by_name(signature, n) for n in names["inputs"]}
    out_buf = {n: model.create_output_buffer_by_name(signature, n) for n in names["outputs"]}
    results = {}
    with np.load(folder / "feeds.npz") as feeds:
        count = len({k.split("/", 1)[0] for k in feeds.files})
        for i in range(count):
            for name in names["inputs"]:
                in_buf[name].write(np.ascontiguousarray(feeds[f"{i}/{name}"], inputs[name]["dtype"]))
            model.run_by_name(signature, in_buf, out_buf)
            for name in names["outputs"]:
                shape = tuple(outputs[name]["shape"])
                results[f"{i}/{name}"] = out_buf[name].read(
                    int(np.prod(shape)), outputs[name]["dtype"]).reshape(shape)
    np.savez(folder / "outputs.npz", **results)
    _say(compile_ms=compile_ms, ran=True, fully_accelerated=True, probes=count)
    return 0


if __name__ == "__main__":
    sys.stdout.flush()
    code = main(sys.argv[1])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
