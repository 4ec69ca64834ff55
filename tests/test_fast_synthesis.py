"""Fused synthesis (fast_synthesis.py) and compact int8 bases (compact_bases.py).

Exactness: the float32-bases path equals synthesis.synthesize byte for byte, the compact path
equals compact_bases.synthesize_reference (its plain definition), and the compiled kernel, with
its AVX2 loops and with its generic ones, equals the NumPy fallback. Timing lives in benchmarks/synthesis_kernel.py, not here.
"""

import numpy as np
import pytest

from basisnet_deploy.artifacts import compact_bases
from basisnet_deploy.artifacts import fast_synthesis
from basisnet_deploy.artifacts.compact_bases import CompactBasesError
from basisnet_deploy.artifacts.fast_synthesis import FastSynthesisError, FastSynthesizer
from basisnet_deploy.artifacts.synthesis import Patch, synthesize
from basisnet_deploy.common.errors import UserError

needs_compiled = pytest.mark.skipif(not fast_synthesis.compiled_available(),
                                    reason="compiled kernel not built (no C compiler at install)")
KERNELS = ["numpy", pytest.param("compiled", marks=needs_compiled)]


LAYERS = [("expand", "conv", 0), ("dw", "depthwise", 0), ("project", "conv", 1)]  # (name, kind, slot)


@pytest.fixture(scope="module")
def presynth():
    """A small int8 TFLite template (conv, depthwise, conv; 3 bases, 2 coefficient rows),
    converted and located as export does it, in seconds instead of a full export's minutes."""
    import keras
    import tensorflow as tf

    from basisnet_deploy.calibration.reader import FeedReader
    from basisnet_deploy.converters.base import Graph
    from basisnet_deploy.converters.tflite import TFLiteExporter
    from basisnet_deploy.converters.tflite_patch import locate
    from basisnet_deploy.artifacts.synthesis import Presynth, mix

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    image = keras.Input((16, 16, 8), batch_size=1, name="image")
    x = keras.layers.Conv2D(24, 1, activation="relu", name="expand")(image)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = keras.layers.Conv2D(8, 1, name="project")(x)
    model = keras.Model(image, keras.layers.GlobalAveragePooling2D()(x))
    baked = np.full((2, 3), 1 / 3, np.float32)
    bases, expected = {}, {}
    for name, kind, slot in LAYERS:
        kernel, bias = model.get_layer(name).get_weights()
        shape = np.transpose(kernel, (3, 0, 1, 2)).shape  # Keras HWIO / HWC1 -> TFLite OHWI / 1HWC
        bases[name] = rng.normal(0, 0.3, (3, *shape)).astype(np.float32)
        bases[name + "/bias"] = rng.normal(0, 0.2, bias.shape).astype(np.float32)
        expected[name] = (kind, slot, mix(bases[name], baked[slot]))
        model.get_layer(name).set_weights([np.transpose(expected[name][2], (1, 2, 3, 0)),
                                           bases[name + "/bias"]])
    spec = tf.TensorSpec([1, 16, 16, 8], tf.float32, name="image")
    graph = Graph("specialist_presynth", model, lambda image: {"logits": model(image)}, [spec],
                  ["logits"], patchable=True)
    feeds = [{"image": rng.standard_normal((1, 16, 16, 8)).astype(np.float32)} for _ in range(8)]
    template = TFLiteExporter().convert(graph, "int8", FeedReader(feeds))
    return Presynth(None, template, locate(template, expected), bases)


@pytest.fixture(scope="module")
def compact(presynth, tmp_path_factory):
    path = compact_bases.write(tmp_path_factory.mktemp("compact"), presynth.bases, presynth.table)
    return compact_bases.load(path, presynth.table)


def _coefficients(seed, k=3, rows=2):
    return np.random.default_rng(seed).dirichlet(np.ones(k), size=rows).astype(np.float32)


def _synthetic(k=4, seed=0, bias_dtype="int32"):
    """(template, table, bases): layouts the TFLite export never makes (channel axis 1 with
    inner > 1, no bias, an all-zero channel), odd lengths, unaligned offsets; int32 biases, or
    int64 ones as beside int16 activations."""
    rng = np.random.default_rng(seed)
    specs = [("conv", (12, 1, 1, 20), -1, True), ("depthwise", (1, 3, 3, 16), -1, True),
             ("conv", (5, 6, 3, 3), 1, False), ("conv", (7, 2, 2, 3), 0, True),
             # long enough for the AVX2 loops' 32-wide blocks, 8-wide steps and scalar tails
             ("conv", (6, 1, 1, 77), -1, True), ("depthwise", (1, 3, 3, 45), -1, False)]
    table, bases, at = [], {}, 7
    width = np.dtype(bias_dtype).itemsize
    for i, (kind, shape, axis, has_bias) in enumerate(specs):
        n, c = int(np.prod(shape)), shape[axis if axis >= 0 else {"conv": 0, "depthwise": 3}[kind]]
        p = Patch(f"l{i}", i % 2, kind, shape, "int8", at, at + n + 1,
                  at + n + 3 + 4 * c if has_bias else -1, at + n + 5 + (4 + width) * c if has_bias else -1,
                  0.02 * (i + 1), axis, bias_dtype=bias_dtype)
        at += n + 9 + (8 + width) * c
        table.append(p)
        bases[p.layer] = rng.normal(0, 0.1, (k, *shape)).astype(np.float32)
        bases[p.layer + "/bias"] = rng.normal(0, 1, c).astype(np.float32)
    bases["l0"][:, 3] = 0.0  # a dead channel with a bias: its scale is the bias floor
    bases["l5"][..., 7] = 0.0  # a dead channel without one: scale falls back to float32(1e-9)
    return bytes(rng.integers(0, 256, at + 11, dtype=np.uint8)), table, bases


@needs_compiled
def test_int64_biases_compiled_numpy_and_reference_give_identical_bytes():
    """Beside int16 activations (full-16x8 templates) the bias is int64: the compiled kernel
    writes it as the NumPy path and the reference do, and an all-zero channel's scale is raised
    to the bias floor as for int32 (its bias near 2^30, not 2^31 or more)."""
    template, table, bases = _synthetic(bias_dtype="int64")
    bases["l3/bias"][2] = 1e9  # a huge bias on an all-zero channel: still near 2^30
    bases["l3"][:, 2] = 0.0
    coefficients = [_coefficients(s, k=4, rows=2) for s in range(3)]
    outs = {}
    for kernel, simd in (("numpy", True), ("compiled", True), ("compiled", False)):
        try:
            fast_synthesis.use_simd(simd)
            fast = FastSynthesizer(template, table, kernel=kernel, bases=bases)
            outs[kernel, simd] = [bytes(fast.synthesize(c)) for c in coefficients]
        finally:
            fast_synthesis.use_simd(True)
    assert outs["numpy", True] == outs["compiled", True] == outs["compiled", False]
    ref = synthesize(template, table, bases, coefficients[-1])
    assert outs["compiled", True][-1] == ref
    for p, channel in ((table[0], 3), (table[3], 2)):  # the two all-zero channels with a bias
        bias_q = np.frombuffer(ref, "<i8", p.channels, p.bias_offset)
        bias_scale = np.frombuffer(ref, "<f4", p.channels, p.bias_scale_offset)
        bias = bases[p.layer + "/bias"][channel]
        assert 2**29 < abs(int(bias_q[channel])) <= 2**30 + 64, p.layer
        assert abs(bias_q[channel] * float(bias_scale[channel]) - bias) <= 1e-6 * abs(bias)


@pytest.mark.parametrize("dtype, value, expected", [
    ("int32", 2.0**31, 2**31 - 1), ("int32", -2.0**31, -2**31), ("int32", 2.0**31 - 128, 2**31 - 128),
    ("int32", np.inf, 2**31 - 1), ("int32", -np.inf, -2**31),
    ("int64", 2.0**63, 2**63 - 1), ("int64", -2.0**63, -2**63), ("int64", 2.0**63 - 2**39, 2**63 - 2**39),
    ("int64", np.inf, 2**63 - 1), ("int64", -np.inf, -2**63), ("int64", -2.5, -2)])
def test_quantize_bias_rounds_half_even_and_saturates_at_the_types_bounds(dtype, value, expected):
    """The bound itself saturates (a plain cast of float32(2^31) or 2^63 overflows to the
    minimum); the largest float32 below it converts exactly; halves round to even."""
    from basisnet_deploy.artifacts.synthesis import quantize_bias

    out = quantize_bias(np.array([value], np.float32), np.float32(1.0), dtype)
    assert out.dtype == np.dtype(dtype).newbyteorder("<")
    assert int(out[0]) == expected


def test_a_dead_channel_of_an_int16x8_template_keeps_its_bias():
    """An int16x8 conv whose synthesized kernel is zero in one channel still outputs that
    channel's bias. Without the bias floor on its weight scale (1e-9) the int64 bias is about
    1.6e14 after an input scale of 1.8e-6, past what TFLite's 16x8 kernels compute, and the
    requantize multiplier under 2^-31: the channel output 0."""
    import keras
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from basisnet_deploy.artifacts.synthesis import mix
    from basisnet_deploy.calibration.reader import FeedReader
    from basisnet_deploy.converters.base import Graph
    from basisnet_deploy.converters.tflite import TFLiteExporter
    from basisnet_deploy.converters.tflite_patch import locate

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    image = keras.Input((8, 8, 4), batch_size=1, name="image")
    conv = keras.layers.Conv2D(6, 1, name="expand")
    model = keras.Model(image, keras.layers.GlobalAveragePooling2D()(conv(image)))
    bases = {"expand": rng.normal(0, 0.3, (3, 6, 1, 1, 4)).astype(np.float32),
             "expand/bias": rng.normal(0, 0.2, 6).astype(np.float32)}
    baked = np.full((1, 3), 1 / 3, np.float32)
    conv.set_weights([np.transpose(mix(bases["expand"], baked[0]), (1, 2, 3, 0)), bases["expand/bias"]])
    graph = Graph("specialist_presynth", model, lambda image: {"logits": model(image)},
                  [tf.TensorSpec([1, 8, 8, 4], tf.float32, name="image")], ["logits"], patchable=True)
    # inputs of small range: an input scale near 1.8e-6 (int16)
    feeds = [{"image": (0.01 * rng.standard_normal((1, 8, 8, 4))).astype(np.float32)} for _ in range(8)]
    template = TFLiteExporter().convert(graph, "int16x8", FeedReader(feeds, margin=1.5))
    table = locate(template, {"expand": ("conv", 0, mix(bases["expand"], baked[0]))})
    assert table[0].bias_dtype == "int64"
    bases["expand"][:, 4] = 0.0  # channel 4 dead in every basis
    bases["expand/bias"][4] = 0.3
    coefficients = np.array([[0.2, 0.3, 0.5]], np.float32)
    it = Interpreter(model_content=synthesize(template, table, bases, coefficients))
    it.allocate_tensors()
    x = feeds[0]["image"]
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    got = it.get_tensor(it.get_output_details()[0]["index"])
    conv.set_weights([np.transpose(mix(bases["expand"], coefficients[0]), (1, 2, 3, 0)), bases["expand/bias"]])
    want = model(x).numpy()
    assert want[0, 4] == pytest.approx(0.3, abs=1e-6)
    assert got[0, 4] == pytest.approx(0.3, abs=0.01)
    assert np.abs(got - want).max() < 0.01


@pytest.mark.parametrize("kernel", KERNELS)
def test_float_path_equals_reference_synthesize(presynth, kernel):
    fast = FastSynthesizer(presynth.template, presynth.table, bases=presynth.bases, kernel=kernel)
    assert fast.kernel == kernel
    for seed in range(3):  # per-frame-changing coefficients, patched into the same buffer
        coeff = _coefficients(seed)
        ref = synthesize(presynth.template, presynth.table, presynth.bases, coeff)
        assert bytes(fast.synthesize(coeff)) == ref
        assert fast.layers_done == len(presynth.table)


@pytest.mark.parametrize("kernel", KERNELS)
def test_compact_path_equals_its_reference_definition(presynth, compact, kernel):
    fast = FastSynthesizer(presynth.template, presynth.table, compact=compact, kernel=kernel)
    for seed in range(3):
        coeff = _coefficients(seed)
        ref = compact_bases.synthesize_reference(presynth.template, presynth.table, compact, coeff)
        assert bytes(fast.synthesize(coeff)) == ref
    # Compact bases change the model a little, not a lot: kernels within +-2 int8 steps.
    ref = np.frombuffer(synthesize(presynth.template, presynth.table, presynth.bases, coeff), np.int8)
    got = np.frombuffer(fast.buffer, np.int8)
    p = presynth.table[0]
    n = int(np.prod(p.shape))
    diff = got[p.weight_offset:p.weight_offset + n].astype(int) - ref[p.weight_offset:p.weight_offset + n]
    assert 0 < np.abs(diff).max() <= 2


@needs_compiled
@pytest.mark.parametrize("use_compact", [False, True])
def test_compiled_and_numpy_give_identical_bytes(use_compact):
    template, table, bases = _synthetic()
    arrays = compact_bases.compact(bases, table)
    source = {"compact": arrays} if use_compact else {"bases": bases}
    coefficients = [_coefficients(s, k=4, rows=2) for s in range(4)]
    outs = {}
    for kernel, simd in (("numpy", True), ("compiled", True), ("compiled", False)):
        try:
            fast_synthesis.use_simd(simd)
            fast = FastSynthesizer(template, table, kernel=kernel, **source)
            outs[kernel, simd] = [bytes(fast.synthesize(c)) for c in coefficients]
        finally:
            fast_synthesis.use_simd(True)
    assert outs["numpy", True] == outs["compiled", True] == outs["compiled", False]
    ref = (compact_bases.synthesize_reference(template, table, arrays, coefficients[-1]) if use_compact
           else synthesize(template, table, bases, coefficients[-1]))
    assert outs["compiled", True][-1] == ref
    # The dead channel 3 of l0 keeps its bias: before the scale floor, its scale was 1e-9 and
    # the int32 bias saturated (bias ~1 came out as 0.04).
    dead = table[0]
    bias_q = np.frombuffer(ref, "<i4", 12, dead.bias_offset)
    bias_scale = np.frombuffer(ref, "<f4", 12, dead.bias_scale_offset)
    assert np.abs(bias_q.astype(np.int64)).max() < 2**31 - 1  # not saturated (about 2^30 at most)
    assert abs(bias_q[3] * float(bias_scale[3]) - bases["l0/bias"][3]) <= 1e-6 * abs(bases["l0/bias"][3])
    assert np.frombuffer(ref, "<f4", 1, table[5].scale_offset + 4 * 7)[0] == np.float32(1e-9)


@pytest.mark.parametrize("kernel", KERNELS)
def test_unchanged_layers_are_skipped_and_bytes_stay_exact(presynth, kernel):
    fast = FastSynthesizer(presynth.template, presynth.table, bases=presynth.bases, kernel=kernel)
    c1 = _coefficients(1)
    fast.synthesize(c1)
    c2 = c1.copy()
    c2[1] = c2[1][::-1]  # only row 1 changes
    redone = [p for p in presynth.table if p.slot == 1]
    kept = next(p for p in presynth.table if p.slot != 1)
    # Mark one byte of a layer that must be skipped and one of a layer that must be redone.
    fast.buffer[kept.weight_offset] ^= 0xFF
    fast.buffer[redone[0].weight_offset] ^= 0xFF
    out = np.frombuffer(fast.synthesize(c2), np.uint8)
    ref = np.frombuffer(synthesize(presynth.template, presynth.table, presynth.bases, c2), np.uint8)
    assert fast.layers_done == len(redone) == 1
    assert out[kept.weight_offset] == ref[kept.weight_offset] ^ 0xFF  # not rewritten: skipped
    out = out.copy()
    out[kept.weight_offset] ^= 0xFF
    assert np.array_equal(out, ref)  # everything else, the redone layers included, exact
    fast.synthesize(c2)
    assert fast.layers_done == 0
    fast.invalidate()
    assert bytes(fast.synthesize(c2)) == ref.tobytes() and fast.layers_done == len(presynth.table)


def test_resynthesis_in_place_changes_the_interpreter_output(presynth, compact):
    """XNNPACK packs weights at interpreter creation; a patched buffer must reach the model."""
    from basisnet_deploy.runtime.sessions import LiteRTSession

    assert {p.layer for p in presynth.table} == {name for name, _, _ in LAYERS}

    x = np.random.default_rng(0).standard_normal((1, 16, 16, 8)).astype(np.float32)
    fast = FastSynthesizer(presynth.template, presynth.table, compact=compact)
    eye = np.broadcast_to(np.eye(3, dtype=np.float32), (2, 3, 3))
    outs = []
    for k in (0, 1):
        session = LiteRTSession(fast.synthesize(eye[:, k]), xnnpack=True)
        outs.append(session.run({"image": x})["logits"])
    assert not np.array_equal(outs[0], outs[1])
    fresh = LiteRTSession(compact_bases.synthesize_reference(presynth.template, presynth.table, compact,
                                                             eye[:, 1]), xnnpack=True)
    assert np.array_equal(outs[1], fresh.run({"image": x})["logits"])


def _one_line(excinfo, *words):
    msg = str(excinfo.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


@pytest.mark.parametrize("damage, words", [
    (lambda a, p: a.pop(p + "/q8"), ["no 'l1/q8'"]),
    (lambda a, p: a.update({p + "/q8": a[p + "/q8"][:, :, :, :-1]}), ["'l1/q8' has shape"]),
    (lambda a, p: a.update({p + "/q8": a[p + "/q8"][:-1]}), ["'l1/q8' has shape"]),  # K differs
    (lambda a, p: a.update({p + "/q8": a[p + "/q8"].astype(np.int16)}), ["'l1/q8' is int16"]),
    (lambda a, p: a.update({p + "/scales": a[p + "/scales"][:, :-1]}), ["'l1/scales' has shape"]),
    (lambda a, p: a.update({p + "/scales": a[p + "/scales"].astype(np.float64)}), ["'l1/scales' is float64"]),
    (lambda a, p: a[p + "/scales"].__setitem__((0, 0), np.nan), ["'l1/scales'", "non-finite"]),
    (lambda a, p: a[p + "/scales"].__setitem__((1, 2), np.inf), ["'l1/scales'", "non-finite"]),
    (lambda a, p: a[p + "/scales"].__setitem__((1, 2), 0.0), ["'l1/scales'", "non-positive"]),
    (lambda a, p: a.pop("format"), ["'format'"]),
])
def test_bad_compact_bases_give_one_line_naming_file_and_field(tmp_path, damage, words):
    template, table, bases = _synthetic()
    arrays = {k: v.copy() for k, v in compact_bases.compact(bases, table).items()}
    damage(arrays, "l1")
    path = tmp_path / compact_bases.FILENAME
    np.savez(path, **arrays)
    with pytest.raises(CompactBasesError) as e:
        compact_bases.load(path, table)
    _one_line(e, compact_bases.FILENAME, *words)
    with pytest.raises(CompactBasesError) as e:  # the synthesizer checks arrays given directly
        FastSynthesizer(template, table, compact=arrays)
    _one_line(e, *words)


def test_bad_float_bases_table_and_coefficients_are_refused(tmp_path):
    template, table, bases = _synthetic()
    cases = [
        (dict(bases={**bases, "l2": bases["l2"][:, :-1]}), ["specialist_bases.npz", "'l2' has shape"]),
        (dict(bases={**bases, "l0/bias": bases["l0/bias"][:-1]}), ["specialist_bases.npz", "'l0/bias'"]),
        (dict(bases={**bases, "l3": np.where(bases["l3"] > 0.1, np.inf, bases["l3"])}), ["'l3'", "non-finite"]),
        (dict(bases=bases, table=table[:3] + [Patch(**{**vars(table[3]), "weight_offset": len(template) - 2})]),
         ["specialist_patches.json", "'l3'", "outside the template"]),
        (dict(bases=bases, table=[Patch(**{**vars(table[0]), "dtype": "float32"})]),
         ["specialist_patches.json", "'l0' is float32"]),
    ]
    for kwargs, words in cases:
        with pytest.raises(FastSynthesisError) as e:
            FastSynthesizer(template, kwargs.pop("table", table), **kwargs)
        _one_line(e, *words)
    fast = FastSynthesizer(template, table, bases=bases)
    for coeff, words in ((np.ones((2, 3), np.float32), ["coefficients: shape (2, 3)"]),
                         (np.full((2, 4), np.nan, np.float32), ["coefficients: non-finite"])):
        with pytest.raises(FastSynthesisError) as e:
            fast.synthesize(coeff)
        _one_line(e, *words)
    for bad in (np.nan, np.inf):  # the reference path refuses what the fast one does
        coeff = np.ones((2, 4), np.float32)
        coeff[1, 2] = bad
        with pytest.raises(UserError) as e:
            synthesize(template, table, bases, coeff)
        _one_line(e, "coefficients: non-finite")


def test_without_the_compiled_kernel_numpy_is_used(monkeypatch):
    template, table, bases = _synthetic()
    coeff = _coefficients(0, k=4, rows=2)
    monkeypatch.setattr(fast_synthesis, "_KERNEL", None)
    fast = FastSynthesizer(template, table, bases=bases)  # "auto"
    assert fast.kernel == "numpy"
    assert bytes(fast.synthesize(coeff)) == synthesize(template, table, bases, coeff)
    with pytest.raises(FastSynthesisError) as e:
        FastSynthesizer(template, table, bases=bases, kernel="compiled")
    _one_line(e, "not built")


def test_export_writes_compact_bases_next_to_the_float_bases(presynth, tmp_path, monkeypatch):
    """The export hook (export._write_presynth_sidecars), with the converter stubbed out."""
    from types import SimpleNamespace

    from basisnet_deploy.export import pipeline as export_module
    from basisnet_deploy.common.files import sha256_hex

    class Exporter:
        def patch_table(self, template, folded, baked, quantize):
            return presynth.table, presynth.bases

    monkeypatch.setattr(export_module, "fold_bases", lambda specialist: {})
    entry = export_module._write_presynth_sidecars(tmp_path, Exporter(), presynth.template,
                                                   SimpleNamespace(specialist=None), np.zeros((2, 3)), "int8")
    path = tmp_path / entry.bases_int8
    assert path.name == compact_bases.FILENAME
    assert sha256_hex(path.read_bytes()) == entry.bases_int8_sha256
    arrays = compact_bases.load(path, presynth.table)
    for key, value in compact_bases.compact(presynth.bases, presynth.table).items():
        assert np.array_equal(arrays[key], value), key
    q = arrays["expand/q8"].astype(np.float32) * arrays["expand/scales"][:, :, None, None, None]
    step = arrays["expand/scales"][:, :, None, None, None]
    assert np.all(np.abs(q - presynth.bases["expand"]) <= 0.5 * step * (1 + 1e-6))
