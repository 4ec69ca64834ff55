"""The ONNX weight-only int8 scheme (converters/onnx.py ``_weight_only``) on hand-built graphs:
one scale per output channel, whatever the layout of the weight, and int8 weights that
onnxruntime turns back into float when it loads the model, not every frame."""

from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from basisnet_deploy.converters.onnx import _weight_only


def _model(node, inputs, output, initializers):
    graph = helper.make_graph([node], "g", inputs, [output], initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _gemm(w: np.ndarray, trans_b: int):
    n = w.shape[0] if trans_b else w.shape[1]
    node = helper.make_node("Gemm", ["x", "w"], ["y"], transB=trans_b)
    return _model(node, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                  helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, n]),
                  [numpy_helper.from_array(w, "w")])


def _conv(w: np.ndarray):
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    return _model(node, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                  helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, w.shape[0], 6, 6]),
                  [numpy_helper.from_array(w, "w")])


def _run(model_bytes: bytes, x: np.ndarray, optimized: str | None = None) -> np.ndarray:
    opts = ort.SessionOptions()
    if optimized:
        opts.optimized_model_filepath = optimized
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_weights_get_one_scale_per_output_column(trans_b):
    """A weight whose output channels differ in size by 1000x: scaled per output channel,
    every output keeps its precision; scaled along the wrong axis, the small outputs would
    round to a few steps of the large ones' scale."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 5)).astype(np.float32) * np.float32([1, 1e3, 1, 1e-3, 1])  # [K, N]
    if trans_b:
        w = np.ascontiguousarray(w.T)  # [N, K]
    model = onnx.load_from_string(_weight_only(_gemm(w, trans_b), SimpleNamespace(name="gemm")))
    scales = [numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_scale")]
    assert len(scales) == 1 and scales[0].size == 5
    assert scales[0].shape == ((5, 1) if trans_b else (1, 5))
    x = rng.normal(size=(2, 8)).astype(np.float32)
    want = x @ (w.T if trans_b else w)
    got = _run(model.SerializeToString(), x)
    per_output = np.abs(got - want).max(axis=0) / np.abs(want).max(axis=0)
    assert per_output.max() < 0.02


def test_onnxruntime_turns_the_int8_conv_weights_into_float_when_it_loads_the_model(tmp_path):
    """The Cast and Mul that give the int8 kernel back as float are constant-folded: the
    optimized graph onnxruntime runs has no Cast left (a DequantizeLinear would stay and run
    every frame), and it computes the convolution to int8 weight precision."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    data = _weight_only(_conv(w), SimpleNamespace(name="conv"))
    model = onnx.load_from_string(data)
    assert {n.op_type for n in model.graph.node} == {"Cast", "Mul", "Conv"}
    assert {numpy_helper.to_array(i).dtype.name for i in model.graph.initializer} == {"int8", "float32"}
    x = rng.normal(size=(1, 3, 6, 6)).astype(np.float32)
    optimized = tmp_path / "optimized.onnx"
    got = _run(data, x, str(optimized))
    assert "Cast" not in {n.op_type for n in onnx.load(optimized).graph.node}
    want = _run(_conv(w).SerializeToString(), x)
    assert np.abs(got - want).max() <= 0.02 * np.abs(want).max()


def test_the_folded_bias_check_allows_the_converters_fold_order_and_refuses_a_wrong_bias():
    """Where beta is close to mean * scale, the converter's fold order can leave the bias a few
    float32 ulps of mean * scale away from fold_bases's, far more than the bias; that passes.
    A bias off by 1% of its largest value, or missing, does not."""
    from basisnet_deploy.converters.base import is_folded_bias

    rng = np.random.default_rng(0)
    mean_scale = rng.uniform(50, 100, 16).astype(np.float32)  # large running means
    beta = mean_scale + rng.uniform(-0.5, 0.5, 16).astype(np.float32)
    ours = (beta - mean_scale).astype(np.float32)
    theirs = (beta - mean_scale * np.float32(1 + 4 * 2.0 ** -23)).astype(np.float32)  # 4 ulps
    assert not np.array_equal(ours, theirs)
    assert is_folded_bias(theirs, ours)
    assert not is_folded_bias(ours + 0.01 * np.abs(ours).max(), ours)
    assert not is_folded_bias(np.zeros_like(ours), ours)
    assert not is_folded_bias(ours[:8], ours)
