"""Fused synthesis (fast_synthesis.py) and compact int8 bases (compact_bases.py).

Exactness: the float32-bases path equals synthesis.synthesize byte for byte, the compact path
equals synthesize on the dequantized compact bases, and the compiled kernel equals the NumPy
fallback. Timing lives in benchmarks/synthesis_kernel.py, not here.
"""

import numpy as np
import pytest

from basisnet_deploy import compact_bases, fast_synthesis
from basisnet_deploy.compact_bases import CompactBasesError
from basisnet_deploy.fast_synthesis import FastSynthesisError, FastSynthesizer
from basisnet_deploy.synthesis import Patch, load_presynth, synthesize

needs_compiled = pytest.mark.skipif(not fast_synthesis.compiled_available(),
                                    reason="compiled kernel not built (no C compiler at install)")
KERNELS = ["numpy", pytest.param("compiled", marks=needs_compiled)]


@pytest.fixture(scope="module")
def presynth(int8_tflite):
    out, m = int8_tflite
    return load_presynth(out, m["artifacts"]["specialist_presynth"])


@pytest.fixture(scope="module")
def compact(int8_tflite, presynth):
    out, m = int8_tflite
    entry = m["artifacts"]["specialist_presynth"]
    path = out / entry["bases_int8"]
    from basisnet_deploy.verify import sha256_hex

    assert sha256_hex(path.read_bytes()) == entry["bases_int8_sha256"]
    return compact_bases.load(path, presynth.table)


def _coefficients(seed, k=3, rows=8):
    return np.random.default_rng(seed).dirichlet(np.ones(k), size=rows).astype(np.float32)


def _synthetic(k=4, seed=0):
    """(template, table, bases): layouts the TFLite export never makes (channel axis 1 with
    inner > 1, no bias, an all-zero channel), with unaligned offsets."""
    rng = np.random.default_rng(seed)
    specs = [("conv", (12, 1, 1, 20), -1, True), ("depthwise", (1, 3, 3, 16), -1, True),
             ("conv", (5, 6, 3, 3), 1, False), ("conv", (7, 2, 2, 3), 0, True)]
    table, bases, at = [], {}, 7
    for i, (kind, shape, axis, has_bias) in enumerate(specs):
        n, c = int(np.prod(shape)), shape[axis if axis >= 0 else {"conv": 0, "depthwise": 3}[kind]]
        p = Patch(f"l{i}", i % 2, kind, shape, "int8", at, at + n + 1,
                  at + n + 3 + 4 * c if has_bias else -1, at + n + 5 + 8 * c if has_bias else -1,
                  0.02 * (i + 1), axis)
        at += n + 9 + 12 * c
        table.append(p)
        bases[p.layer] = rng.normal(0, 0.1, (k, *shape)).astype(np.float32)
        bases[p.layer + "/bias"] = rng.normal(0, 1, c).astype(np.float32)
    bases["l0"][:, 3] = 0.0  # a channel that mixes to zero: scale falls back to float32(1e-9)
    return bytes(rng.integers(0, 256, at + 11, dtype=np.uint8)), table, bases


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
def test_compact_path_equals_reference_on_dequantized_bases(presynth, compact, kernel):
    deq = compact_bases.dequantize(compact, presynth.table)
    fast = FastSynthesizer(presynth.template, presynth.table, compact=compact, kernel=kernel)
    for seed in range(3):
        coeff = _coefficients(seed)
        assert bytes(fast.synthesize(coeff)) == synthesize(presynth.template, presynth.table, deq, coeff)
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
    source = {"compact": compact_bases.compact(bases, table)} if use_compact else {"bases": bases}
    outs = {}
    for kernel in ("numpy", "compiled"):
        fast = FastSynthesizer(template, table, kernel=kernel, **source)
        outs[kernel] = [bytes(fast.synthesize(_coefficients(s, k=4, rows=2))) for s in range(4)]
    assert outs["numpy"] == outs["compiled"]
    ref = synthesize(template, table, compact_bases.dequantize(source["compact"], table)
                     if use_compact else bases, _coefficients(3, k=4, rows=2))
    assert outs["compiled"][-1] == ref
    zero = table[0]  # the all-zero channel 3 got scale float32(1e-9), as the reference writes
    assert np.frombuffer(ref, "<f4", 1, zero.scale_offset + 12)[0] == np.float32(1e-9)


@pytest.mark.parametrize("kernel", KERNELS)
def test_unchanged_layers_are_skipped_and_bytes_stay_exact(presynth, kernel):
    fast = FastSynthesizer(presynth.template, presynth.table, bases=presynth.bases, kernel=kernel)
    c1 = _coefficients(1)
    fast.synthesize(c1)
    c2 = c1.copy()
    c2[2] = c2[2][::-1]  # only block 2's row changes
    redone = [p for p in presynth.table if p.slot == 2]
    kept = next(p for p in presynth.table if p.slot != 2)
    # Mark one byte of a layer that must be skipped and one of a layer that must be redone.
    fast.buffer[kept.weight_offset] ^= 0xFF
    fast.buffer[redone[0].weight_offset] ^= 0xFF
    out = np.frombuffer(fast.synthesize(c2), np.uint8)
    ref = np.frombuffer(synthesize(presynth.template, presynth.table, presynth.bases, c2), np.uint8)
    assert fast.layers_done == len(redone) == 3
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
    from basisnet_deploy.runtime import LiteRTSession

    x = np.random.default_rng(0).standard_normal((1, 32, 32, 3)).astype(np.float32)
    fast = FastSynthesizer(presynth.template, presynth.table, compact=compact)
    eye = np.broadcast_to(np.eye(3, dtype=np.float32), (8, 3, 3))
    outs = []
    for k in (0, 1):
        session = LiteRTSession(fast.synthesize(eye[:, k]), xnnpack=True)
        outs.append(session.run({"image": x})["logits"])
    assert not np.array_equal(outs[0], outs[1])
    deq = compact_bases.dequantize(compact, presynth.table)
    fresh = LiteRTSession(synthesize(presynth.template, presynth.table, deq, eye[:, 1]), xnnpack=True)
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
        (dict(bases=bases, table=table[:-1] + [Patch(**{**vars(table[-1]), "weight_offset": len(template) - 2})]),
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
