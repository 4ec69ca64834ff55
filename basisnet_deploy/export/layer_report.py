"""Per-layer error of a quantized TFLite model against its float twin (NumPy + ai_edge_litert).

Both models are converted from the same graph (same tensor names), one float32 and one
quantized. Each is run on the same feeds with ``experimental_preserve_all_tensors=True``;
every intermediate tensor of the quantized model is dequantized and compared with the float
tensor of the same name. The report ranks tensors by their error relative to the float
tensor's spread, so the layers that carry the error come first.

The error of a tensor accumulates everything before it; the ``added`` column (its error
minus the largest error among its inputs) points at the op that adds the error.
"""

from __future__ import annotations

import numpy as np


def _interpreter(model: bytes):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    return it


def _run(it, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every non-constant tensor, dequantized to float, by name."""
    runner_inputs = {d["name"]: d for d in it.get_input_details()}
    for name, value in feed.items():
        d = next((d for n, d in runner_inputs.items() if n.endswith(name) or name in n), None)
        if d is None:
            raise KeyError(f"no input named like {name!r}: {list(runner_inputs)}")
        scale, zero = d["quantization"]
        if d["dtype"] != np.float32 and scale:
            value = np.round(value / scale + zero)
        it.set_tensor(d["index"], value.astype(d["dtype"]))
    it.invoke()
    out = {}
    for d in it.get_tensor_details():
        try:
            value = it.get_tensor(d["index"])
        except ValueError:  # tensors with no data (e.g. optional inputs)
            continue
        if value is None or value.dtype not in (np.float32, np.int8, np.int16, np.uint8):
            continue
        scales, zeros = d["quantization_parameters"]["scales"], d["quantization_parameters"]["zero_points"]
        if value.dtype != np.float32:
            if len(scales) != 1:
                continue  # per-channel constants (weights): not activations
            value = (value.astype(np.float32) - zeros[0]) * scales[0]
        out[d["name"]] = value
    return out


def _producers(it) -> dict[str, list[str]]:
    """tensor name -> names of the input tensors of the op that produces it."""
    names = {d["index"]: d["name"] for d in it.get_tensor_details()}
    out = {}
    for op in it._get_ops_details():  # the only API that lists the graph's ops
        for o in op["outputs"]:
            out[names.get(int(o), "")] = [names.get(int(i), "") for i in op["inputs"] if i >= 0]
    return out


def layer_errors(float_model: bytes, quant_model: bytes, feeds: list[dict[str, np.ndarray]]) -> list[dict]:
    """One row per tensor present in both models, worst relative error first.

    ``rel_rms``: RMS of (quantized - float) over RMS of float, pooled over the feeds;
    ``rel_max``: max |quantized - float| over the float tensor's max |value|;
    ``added``: rel_rms minus the largest rel_rms among the producing op's inputs.
    """
    f_it, q_it = _interpreter(float_model), _interpreter(quant_model)
    sq_err: dict[str, float] = {}
    sq_ref: dict[str, float] = {}
    max_err: dict[str, float] = {}
    max_ref: dict[str, float] = {}
    for feed in feeds:
        f_out, q_out = _run(f_it, feed), _run(q_it, feed)
        for name, q in q_out.items():
            f = f_out.get(name)
            if f is None or f.shape != q.shape or f.dtype != np.float32:
                continue
            d = q - f
            sq_err[name] = sq_err.get(name, 0.0) + float(np.sum(d * d))
            sq_ref[name] = sq_ref.get(name, 0.0) + float(np.sum(f * f))
            max_err[name] = max(max_err.get(name, 0.0), float(np.max(np.abs(d))))
            max_ref[name] = max(max_ref.get(name, 0.0), float(np.max(np.abs(f))))
    rel = {n: float(np.sqrt(sq_err[n] / max(sq_ref[n], 1e-30))) for n in sq_err}
    producers = _producers(q_it)
    rows = []
    for name, r in rel.items():
        inputs = [rel[i] for i in producers.get(name, []) if i in rel]
        rows.append({"tensor": name, "rel_rms": round(r, 5),
                     "rel_max": round(max_err[name] / max(max_ref[name], 1e-12), 5),
                     "added": round(r - max(inputs, default=0.0), 5)})
    rows.sort(key=lambda row: -row["rel_rms"])
    return rows


def format_report(rows: list[dict], top: int = 15) -> str:
    """A Markdown table of the ``top`` rows by ``added`` (the ops that add the most error)."""
    lines = ["| tensor | rel_rms | rel_max | added |", "| --- | --- | --- | --- |"]
    for row in sorted(rows, key=lambda r: -r["added"])[:top]:
        lines.append(f"| {row['tensor']} | {row['rel_rms']:.4f} | {row['rel_max']:.4f} | "
                     f"{row['added']:+.4f} |")
    return "\n".join(lines)
