"""The persistent specialist (kernels as model inputs) and the float32 mix that feeds it."""

import numpy as np
import pytest

from basisnet_deploy.artifacts import fast_synthesis
from basisnet_deploy.artifacts.fast_synthesis import FastSynthesisError, mix_into
from basisnet_deploy.artifacts.synthesis import mix

needs_compiled = pytest.mark.skipif(fast_synthesis._MIX_F32 is None,
                                    reason="the compiled kernel was not built here")


def _bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


@pytest.mark.parametrize("n", [1, 7, 31, 4096, 4096 * 3 + 45])
@pytest.mark.parametrize("compiled", [pytest.param(True, marks=needs_compiled), False])
def test_mix_into_gives_the_reference_mix_bit_for_bit(n, compiled):
    rng = np.random.default_rng(n)
    bases = rng.standard_normal((5, n)).astype(np.float32)
    a = rng.dirichlet(np.ones(5)).astype(np.float32)
    out = np.full(n, np.nan, np.float32)
    mix_into(bases, a, out, compiled=compiled)
    assert np.array_equal(_bits(out), _bits(mix(bases, a)))


@needs_compiled
def test_mix_into_generic_and_simd_loops_agree():
    rng = np.random.default_rng(1)
    bases = rng.standard_normal((16, 10_000)).astype(np.float32)
    a = rng.dirichlet(np.ones(16)).astype(np.float32)
    outs = []
    try:
        for simd in (True, False):
            fast_synthesis.use_simd(simd)
            out = np.empty(10_000, np.float32)
            mix_into(bases, a, out)
            outs.append(out)
    finally:
        fast_synthesis.use_simd(True)
    assert np.array_equal(_bits(outs[0]), _bits(outs[1]))
    assert np.array_equal(_bits(outs[0]), _bits(mix(bases, a)))


def test_mix_into_refuses_what_does_not_fit():
    bases = np.ones((3, 10), np.float32)
    a = np.full(3, 1 / 3, np.float32)
    for bad_bases, bad_a, out in ((bases, a, np.empty(9, np.float32)),  # out too small
                                  (bases, np.ones(4, np.float32), np.empty(10, np.float32)),
                                  (bases.astype(np.float64), a, np.empty(10, np.float32)),
                                  (bases[:, ::2], a, np.empty(5, np.float32)),  # not contiguous
                                  (bases, a, np.empty(10, np.float64))):
        with pytest.raises(FastSynthesisError, match="do not fit"):
            mix_into(bad_bases, bad_a, out)


@pytest.fixture(scope="module")
def persistent(ckpt):
    """(net, arch, folded bases, the persistent specialist converted to TFLite float32)."""
    import tensorflow as tf

    from basisnet_deploy.converters.base import Graph, fold_bases
    from basisnet_deploy.converters.tflite import TFLiteExporter
    from basisnet_deploy.model import checkpoint
    from basisnet_deploy.model.persistent import (build_persistent_specialist, copy_into_persistent,
                                                  kernel_input_shapes, persistent_feeds)
    from basisnet_deploy.targets.kinds import Quantization

    net, cfg = checkpoint.load(ckpt)
    arch = cfg.architecture
    folded = fold_bases(net.specialist)
    model = build_persistent_specialist(arch, "batch_matmul")
    copy_into_persistent(net.specialist, model, folded)
    shapes = kernel_input_shapes(model)
    assert set(shapes) == set(folded)
    specs = [{"image": tf.TensorSpec([1, arch.resolution, arch.resolution, 3], tf.float32, name="image"),
              **{n: tf.TensorSpec(s, tf.float32, name=n) for n, s in shapes.items()}}]

    def fn(inputs):
        kernels = {k: v for k, v in inputs.items() if k != "image"}
        return {"logits": model(persistent_feeds(inputs["image"], kernels), training=False)}

    tflite = TFLiteExporter().convert(Graph("specialist_persistent", model, fn, specs, ["logits"]),
                                      Quantization.FLOAT32)
    return net, arch, folded, tflite


def _run(tflite: bytes, folded: dict, image, coefficients) -> np.ndarray:
    from ai_edge_litert import interpreter

    it = interpreter.Interpreter(model_content=tflite)
    it.allocate_tensors()
    runner = it.get_signature_runner()
    details = runner.get_input_details()
    logits = runner.get_output_details()["logits"]["index"]
    del runner  # a live signature runner would make invoke() refuse the raw writes below
    it.set_tensor(details["image"]["index"], image)
    for name, layer in folded.items():
        mix_into(layer.bases.reshape(len(layer.bases), -1), coefficients[layer.slot],
                 it.tensor(details[name]["index"])().reshape(-1))
    it.invoke()
    return it.get_tensor(logits).copy()


def test_persistent_specialist_equals_the_synthesized_specialist(persistent):
    """Kernels written into the inputs give the logits of the specialist synthesized with the
    same coefficients, for several coefficient sets (the sets' logits differ, so a kernel
    input that were ignored or misplaced would fail)."""
    from basisnet_deploy.model.network import build_plain_specialist, copy_basis_into_plain

    net, arch, folded, tflite = persistent
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (1, arch.resolution, arch.resolution, 3)).astype(np.float32)
    plain = build_plain_specialist(arch)
    outputs = []
    for _ in range(3):
        c = rng.dirichlet(np.full(arch.bases, 0.3), size=len(arch.nonshared_blocks)).astype(np.float32)
        got = _run(tflite, folded, image, c)
        copy_basis_into_plain(net.specialist, plain, c)
        want = plain(image, training=False).numpy()
        assert np.allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max()), np.abs(got - want).max()
        outputs.append(got)
    assert not np.allclose(outputs[0], outputs[1], rtol=1e-3, atol=0)


def test_persistent_specialist_runs_its_1x1_layers_as_batch_matmul(persistent):
    from ai_edge_litert import interpreter

    *_, tflite = persistent
    it = interpreter.Interpreter(model_content=tflite,
                                 experimental_op_resolver_type=interpreter.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    ops = [o["op_name"] for o in it._get_ops_details()]
    assert ops.count("BATCH_MATMUL") == 16  # expand + project of the 8 non-shared blocks
