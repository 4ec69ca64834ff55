"""The persistent specialist (synthesized kernels as runtime inputs) against static models.

    cd benchmarks && ../.venv/bin/python persistent_specialist.py [--work ../runs/bench-exact]
        [--rounds 5] [--runs 30] [--pipeline-frames 200] [--pipeline-rounds 3]
        [--json results/persistent_specialist.json]
    cd benchmarks && ../.venv/bin/python persistent_specialist.py --photos CKPT PHOTOS
        [--json results/persistent_specialist_photos.json]

Full-size BasisNet-MV3 (the checkpoint and int8 export ``exact_basisnet.py`` makes in
``--work``: random init with trained-like BN statistics, timing only). Converted here,
float32, LiteRT interpreter with XNNPACK, one thread per model:

- the persistent specialist (``model/persistent.py``) in two forms of its 1x1 layers:
  ``batch_matmul`` (BATCH_MATMUL with a runtime right-hand side, which XNNPACK takes) and
  ``fully_connected`` (FULLY_CONNECTED with runtime weights, which the interpreter's XNNPACK
  leaves to the builtin kernel); the depthwise layers take a runtime filter (builtin kernel)
  in both;
- the static float32 specialist of the same network (the template, float32);
- from the int8 export: the plain int8 MobileNetV3-Large (``baseline_plain.tflite``), the LM,
  and today's exact path (the int8 template synthesized by the fused kernel, a new interpreter
  prepared on it, its invoke).

Reported: op counts and XNNPACK partitions (DELEGATE nodes) per model; correctness (the
persistent logits against the Keras specialist and the static float32 template, same
coefficients); per-invoke and per-write medians in interleaved rounds (the order rotates each
round); the float32 mix in four variants (compiled on one and two threads, NumPy with the
bases [K, n] and with the K bases of each weight adjacent); what two cores can do at best from
those medians; and end to end, exact per-frame BasisNet pipelined on three threads (LM,
synthesis, specialist; a pool of three persistent interpreters that synthesis writes into and
the specialist invokes) against ``bench --resynth-every 1``'s pipelined runner on the int8
export and the plain int8 network alone, in interleaved rounds on the same frames.

``--photos CKPT PHOTOS``: top-1 agreement of the persistent specialist with the float
checkpoint on ``PHOTOS/heldout`` (tests/photo_fixture.py), isolated and end to end.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np

from _bench_utils import write_result

from basisnet_deploy.artifacts.fast_synthesis import mix_into

NEVER_EXIT = 2.0


def convert_persistent(net, arch, matmul: str) -> bytes:
    import tensorflow as tf

    from basisnet_deploy.converters.base import Graph, fold_bases
    from basisnet_deploy.converters.tflite import TFLiteExporter
    from basisnet_deploy.model.persistent import (build_persistent_specialist, copy_into_persistent,
                                                  kernel_input_shapes, persistent_feeds)
    from basisnet_deploy.targets.kinds import Quantization

    model = build_persistent_specialist(arch, matmul)
    copy_into_persistent(net.specialist, model, fold_bases(net.specialist))
    shapes = kernel_input_shapes(model)
    specs = [{"image": tf.TensorSpec([1, arch.resolution, arch.resolution, 3], tf.float32, name="image"),
              **{n: tf.TensorSpec(s, tf.float32, name=n) for n, s in shapes.items()}}]

    def fn(inputs):
        kernels = {k: v for k, v in inputs.items() if k != "image"}
        return {"logits": model(persistent_feeds(inputs["image"], kernels), training=False)}

    return TFLiteExporter().convert(Graph("specialist_persistent", model, fn, specs, ["logits"]),
                                    Quantization.FLOAT32)


def convert_hybrid(net, arch, folded: dict, calibration_frames: int = 8) -> bytes:
    """The persistent specialist with its shared layers static int8 and its non-shared blocks
    float32 (their runtime kernels leave XNNPACK no other choice): TF's selective quantization
    (``QuantizationDebugger`` with every node of blocks L8-L15 denylisted), calibrated on random
    frames and kernels mixed from random coefficients (timing only). Hard-swish stays HARD_SWISH:
    spelled out (``decomposed_hard_swish``) the converted model aborts LiteRT's preparation."""
    import re
    import tempfile

    import tensorflow as tf
    from ai_edge_litert import interpreter

    from basisnet_deploy.converters.base import Graph
    from basisnet_deploy.converters.tflite import saved_model_converter
    from basisnet_deploy.model.persistent import (build_persistent_specialist, copy_into_persistent,
                                                  kernel_input_shapes, persistent_feeds)

    model = build_persistent_specialist(arch, "batch_matmul")
    copy_into_persistent(net.specialist, model, folded)
    shapes = kernel_input_shapes(model)
    specs = [{"image": tf.TensorSpec([1, arch.resolution, arch.resolution, 3], tf.float32, name="image"),
              **{n: tf.TensorSpec(s, tf.float32, name=n) for n, s in shapes.items()}}]

    def fn(inputs):
        kernels = {k: v for k, v in inputs.items() if k != "image"}
        return {"logits": model(persistent_feeds(inputs["image"], kernels), training=False)}

    graph = Graph("specialist_persistent", model, fn, specs, ["logits"])
    rng = np.random.default_rng(0)

    def frames():
        for _ in range(calibration_frames):
            c = rng.dirichlet(np.full(arch.bases, 0.3), size=len(arch.nonshared_blocks)).astype(np.float32)
            feeds = {"image": rng.uniform(-1, 1, (1, arch.resolution, arch.resolution, 3)).astype(np.float32)}
            for name, layer in folded.items():
                feeds[name] = np.tensordot(c[layer.slot], layer.bases, 1).reshape(shapes[name]).astype(np.float32)
            yield feeds

    blocks = "|".join(str(i) for i in arch.nonshared_blocks)
    nonshared = re.compile(rf"sp_L({blocks})_")
    with tempfile.TemporaryDirectory() as tmp:
        float_model = interpreter.Interpreter(model_content=saved_model_converter(graph, tmp + "/f").convert())
        names = sorted({float_model._get_tensor_details(t, 0)["name"] for op in float_model._get_ops_details()
                        for t in op["outputs"] if nonshared.search(float_model._get_tensor_details(t, 0)["name"])})
        conv = saved_model_converter(graph, tmp + "/q")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = frames
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=conv, debug_dataset=frames,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=names))
        return debugger.get_nondebug_quantized_model()


def convert_static(net, arch, coefficients) -> bytes:
    import tensorflow as tf

    from basisnet_deploy.converters.base import Graph
    from basisnet_deploy.converters.tflite import TFLiteExporter
    from basisnet_deploy.model.network import build_plain_specialist, copy_basis_into_plain
    from basisnet_deploy.targets.kinds import Quantization

    plain = build_plain_specialist(arch)
    copy_basis_into_plain(net.specialist, plain, coefficients)
    spec = [tf.TensorSpec([1, arch.resolution, arch.resolution, 3], tf.float32, name="image")]
    return TFLiteExporter().convert(Graph("static", plain, lambda image: {"logits": plain(image, training=False)},
                                          spec, ["logits"]), Quantization.FLOAT32)


class Persistent:
    """The persistent model in one interpreter; kernels mixed straight into its input buffers."""

    def __init__(self, model: bytes, folded: dict):
        from ai_edge_litert import interpreter

        self.it = interpreter.Interpreter(model_content=model, num_threads=1)
        self.it.allocate_tensors()
        runner = self.it.get_signature_runner()  # holding it would make invoke() refuse raw writes
        details = runner.get_input_details()
        self.logits = runner.get_output_details()["logits"]["index"]
        del runner
        self.image = details["image"]["index"]
        self.layers = []
        for name, layer in folded.items():
            d = details[name]
            flat = np.ascontiguousarray(layer.bases.reshape(layer.bases.shape[0], -1))
            if flat.shape[1] != int(np.prod(d["shape"])):
                raise ValueError(f"{name}: bases of {flat.shape[1]} weights, input of shape {d['shape']}")
            self.layers.append((d["index"], layer.slot, flat))

    def write(self, coefficients: np.ndarray) -> None:
        """Each kernel input = sum_k a_k W_k, in synthesis.mix's order (the reference float32
        kernel, bit for bit), straight into the interpreter's input buffer."""
        for index, slot, flat in self.layers:
            mix_into(flat, coefficients[slot], self.it.tensor(index)().reshape(-1))

    def invoke(self, image) -> np.ndarray:
        self.it.set_tensor(self.image, image)
        self.it.invoke()
        return self.it.get_tensor(self.logits)


def static_session(model: bytes | Path):
    from ai_edge_litert import interpreter

    kw = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    it = interpreter.Interpreter(num_threads=1, **kw)
    it.allocate_tensors()
    return it


def op_summary(model: bytes) -> dict:
    from ai_edge_litert import interpreter

    plain = interpreter.Interpreter(model_content=model,
                                    experimental_op_resolver_type=interpreter.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    ops = Counter(o["op_name"] for o in plain._get_ops_details())
    delegated = interpreter.Interpreter(model_content=model)
    delegated.allocate_tensors()
    partitions = Counter(o["op_name"] for o in delegated._get_ops_details())["DELEGATE"]
    return {"ops": dict(ops), "xnnpack_partitions": partitions, "bytes": len(model)}


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def persistent_pipeline(export_dir: Path, model: bytes, folded: dict, frames: list, pool: int = 3) -> dict:
    """LM, synthesis and specialist on three threads, as the runner pipelines them: synthesis
    takes a free persistent interpreter from a pool, mixes the frame's kernels into its input
    buffers and hands it on; the specialist invokes it and returns it to the pool."""
    import queue
    import threading

    from basisnet_deploy.runtime.deployment import Deployment
    from basisnet_deploy.runtime.sessions import LiteRTSession
    from basisnet_deploy.targets.kinds import Role

    dep = Deployment(export_dir)
    lm = LiteRTSession(dep.model(Role.LIGHTWEIGHT))
    free: queue.Queue = queue.Queue()
    for _ in range(pool):
        free.put(Persistent(model, folded))
    q1, q2, out = queue.Queue(1), queue.Queue(1), queue.Queue()
    done = object()
    times = {"lightweight": [], "synthesis": [], "specialist": []}

    def light():
        for f in frames:
            t = time.perf_counter()
            c = np.asarray(lm.run({"image": f[0]})["coefficients"], np.float32)[0]
            times["lightweight"].append((time.perf_counter() - t) * 1e3)
            q1.put((f, c))
        q1.put(done)

    def synth():
        while (item := q1.get()) is not done:
            session = free.get()
            t = time.perf_counter()
            session.write(item[1])
            times["synthesis"].append((time.perf_counter() - t) * 1e3)
            q2.put((item[0], session))
        q2.put(done)

    def special():
        while (item := q2.get()) is not done:
            t = time.perf_counter()
            logits = item[1].invoke(item[0][1])
            label = int(np.argmax(logits))
            times["specialist"].append((time.perf_counter() - t) * 1e3)
            free.put(item[1])
            out.put(label)
        out.put(done)

    threads = [threading.Thread(target=fn, daemon=True) for fn in (light, synth, special)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    labels = []
    while (label := out.get()) is not done:
        labels.append(label)
    wall = time.perf_counter() - t0
    return {"frames": len(labels), "throughput_fps": round(len(labels) / wall, 2),
            "stage_p50_ms": {k: round(statistics.median(v), 3) for k, v in times.items()}}


def plain_fps(model: bytes, frames: list) -> float:
    from basisnet_deploy.runtime.sessions import LiteRTSession

    session = LiteRTSession(model)
    session.run({"image": frames[0][1]})
    t = time.perf_counter()
    for f in frames:
        session.run({"image": f[1]})
    return round(len(frames) / (time.perf_counter() - t), 2)


def end_to_end(export_dir: Path, model: bytes, folded: dict, n_frames: int, rounds: int) -> dict:
    """Exact per-frame BasisNet, pipelined, frames/s: the persistent specialist, today's
    re-synthesized int8 template (``bench --resynth-every 1``), and the plain int8 MV3-L alone,
    in interleaved rounds on the same frames."""
    from basisnet_deploy.data import digits
    from basisnet_deploy.report.bench import BenchOptions, bench
    from basisnet_deploy.runtime.deployment import Deployment
    from basisnet_deploy.runtime.runner import ResynthesisPolicy

    dep = Deployment(export_dir)
    images = digits().images
    frames = [dep.frame(images[i % len(images)]) for i in range(n_frames)]
    rows = []
    for r in range(rounds):
        row = {}
        order = ["persistent", "recreate", "plain"] if r % 2 == 0 else ["plain", "recreate", "persistent"]
        for name in order:
            print(f"end to end round {r + 1}: {name}", flush=True)
            if name == "persistent":
                row[name] = persistent_pipeline(export_dir, model, folded, frames)
            elif name == "plain":
                row[name] = {"throughput_fps": plain_fps(dep.model("baseline_plain"), frames)}
            else:
                rep = bench(export_dir, BenchOptions(frames=n_frames, runner="pipelined", threshold=NEVER_EXIT,
                                                     policy=ResynthesisPolicy(every=1)))
                row[name] = {"throughput_fps": rep.runners["pipelined"].throughput_fps,
                             "bench_baseline_fps": rep.baseline_fps}
        row["persistent_vs_plain"] = round(row["persistent"]["throughput_fps"] / row["plain"]["throughput_fps"], 3)
        row["recreate_vs_plain"] = round(row["recreate"]["throughput_fps"] / row["plain"]["throughput_fps"], 3)
        rows.append(row)
    return {"frames": n_frames, "rounds": rows,
            "median_persistent_vs_plain": statistics.median(r["persistent_vs_plain"] for r in rows),
            "median_recreate_vs_plain": statistics.median(r["recreate_vs_plain"] for r in rows)}


def mix_variants(folded: dict, coefficients: np.ndarray, runs: int, rounds: int) -> dict:
    """One frame's float32 mix of every non-shared kernel (77.5 MB of bases at full size), ms:
    the compiled ``mix_into`` on one thread and split across two threads, NumPy on the [K, n]
    layout (``mix_into`` without the compiled loop), and NumPy with the K bases of each weight
    adjacent ([n, K], one matrix-vector product per layer)."""
    import threading

    layers = [(layer.bases.reshape(len(layer.bases), -1), layer.slot) for layer in folded.values()]
    adjacent = [(np.ascontiguousarray(b.T), slot) for b, slot in layers]
    outs = [np.empty(b.shape[1], np.float32) for b, _ in layers]

    def compiled(part=slice(None)):
        for (b, slot), out in list(zip(layers, outs))[part]:
            mix_into(b, coefficients[slot], out)

    def two_threads():
        # each thread takes every other layer, balanced by size
        order = sorted(range(len(layers)), key=lambda i: -layers[i][0].size)
        halves = [order[0::2], order[1::2]]

        def work(idx):
            for i in idx:
                mix_into(layers[i][0], coefficients[layers[i][1]], outs[i])
        t = threading.Thread(target=work, args=(halves[1],))
        t.start()
        work(halves[0])
        t.join()

    def numpy_kn():
        for (b, slot), out in zip(layers, outs):
            mix_into(b, coefficients[slot], out, compiled=False)

    def numpy_nk():
        for (b, slot), out in zip(adjacent, outs):
            np.dot(b, coefficients[slot], out=out)

    jobs = {"compiled_1_thread": compiled, "compiled_2_threads": two_threads,
            "numpy_bases_k_n": numpy_kn, "numpy_bases_adjacent_n_k": numpy_nk}
    for fn in jobs.values():
        fn()
    rows = {n: [] for n in jobs}
    for r in range(rounds):
        for n in list(jobs)[r % len(jobs):] + list(jobs)[:r % len(jobs)]:
            rows[n].append(statistics.median(timed(jobs[n]) for _ in range(runs)))
    return {"median_ms": {n: round(statistics.median(v), 3) for n, v in rows.items()},
            "rounds_ms": {n: [round(x, 3) for x in v] for n, v in rows.items()}}


def photo_agreement(ckpt: Path, photos: Path) -> dict:
    """Top-1 agreement of the persistent specialist with the float Keras checkpoint on held-out
    real photos, one frame at a time: fed the float LM's coefficients (isolated), and fed the
    coefficients of the LM converted to TFLite float32 (end to end)."""
    from basisnet_deploy import data
    from basisnet_deploy.converters.base import fold_bases
    from basisnet_deploy.converters.tflite import TFLiteExporter
    from basisnet_deploy.export.pipeline import _graphs
    from basisnet_deploy.model import checkpoint
    from basisnet_deploy.runtime.sessions import LiteRTSession
    from basisnet_deploy.targets.kinds import Quantization

    net, cfg = checkpoint.load(ckpt)
    a, pre = cfg.architecture, cfg.preprocessing
    held = data.image_folder(photos / "heldout")
    light, image = held.tensors(a.light_resolution, pre), held.tensors(a.resolution, pre)
    ref = net.lightweight(light, training=False)
    ref_coeff = ref["coefficients"].numpy()
    ref_sp = net.specialist([image, ref_coeff], training=False).numpy()
    folded = fold_bases(net.specialist)
    graphs = _graphs(net, cfg, ref_coeff.mean(axis=0))
    lm = LiteRTSession(TFLiteExporter().convert(graphs["lightweight"], Quantization.FLOAT32))
    lm_coeff = np.concatenate([lm.run({"image": x[None]})["coefficients"] for x in light]).astype(np.float32)
    persistent = Persistent(convert_persistent(net, a, "batch_matmul"), folded)

    def go(coeff):
        out = []
        for x, c in zip(image, coeff):
            persistent.write(c)
            out.append(persistent.invoke(x[None]).copy())
        return np.concatenate(out)

    def score(got):
        return {"agreement_percent": round(100 * float(np.mean(np.argmax(got, -1) == np.argmax(ref_sp, -1))), 2),
                "accuracy_percent": round(100 * float(np.mean(np.argmax(got, -1) == held.labels)), 2),
                "float_accuracy_percent": round(100 * float(np.mean(np.argmax(ref_sp, -1) == held.labels)), 2),
                "max_rel": float(f"{np.abs(got - ref_sp).max() / np.abs(ref_sp).max():.3g}")}
    return {"checkpoint": str(ckpt), "photos": str(photos), "heldout_images": int(len(held.labels)),
            "network": f"{a.specialist_arch} {a.width}x{a.resolution}, K={a.bases}",
            "isolated": score(go(ref_coeff)), "end_to_end": score(go(lm_coeff)),
            "lm_coefficients_max_abs_error": float(f"{np.abs(lm_coeff - ref_coeff).max():.3g}")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="../runs/bench-exact")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--forms", default="batch_matmul,fully_connected")
    ap.add_argument("--json", default=None)
    ap.add_argument("--pipeline-frames", type=int, default=200, help="0: skip the end-to-end comparison")
    ap.add_argument("--pipeline-rounds", type=int, default=3)
    ap.add_argument("--hybrid", action="store_true",
                    help="also the persistent specialist with static int8 shared layers (convert_hybrid)")
    ap.add_argument("--photos", nargs=2, metavar=("CKPT", "PHOTOS"),
                    help="only the agreement on PHOTOS/heldout of CKPT (trained on PHOTOS/train)")
    args = ap.parse_args()
    if args.photos:
        write_result(photo_agreement(Path(args.photos[0]), Path(args.photos[1])), args.json)
        return
    from basisnet_deploy.converters.base import fold_bases
    from basisnet_deploy.model import checkpoint

    work = Path(args.work)
    net, cfg = checkpoint.load(work / "ckpt")
    arch = cfg.architecture
    folded = fold_bases(net.specialist)
    rng = np.random.default_rng(0)
    L, K = len(arch.nonshared_blocks), arch.bases
    coeff_sets = [rng.dirichlet(np.full(K, 0.3), size=L).astype(np.float32) for _ in range(4)]
    image = rng.uniform(-1, 1, (1, arch.resolution, arch.resolution, 3)).astype(np.float32)

    print("converting", flush=True)
    static_bytes = convert_static(net, arch, coeff_sets[0])
    persistent_bytes = {form: convert_persistent(net, arch, form) for form in args.forms.split(",")}
    if args.hybrid:
        persistent_bytes["hybrid_int8_shared"] = convert_hybrid(net, arch, folded)
    plain_int8 = work / "tflite-int8" / "baseline_plain.tflite"
    import os

    result = {"load_average_at_start": round(os.getloadavg()[0], 2), "network": f"specialist {arch.specialist_arch} {arch.width}x{arch.resolution}, K={K}, "
                         f"non-shared L{arch.nonshared[0]}-L{arch.nonshared[1]}",
              "threads": 1, "models": {"static_float32": op_summary(static_bytes),
                                       "plain_int8": op_summary(plain_int8.read_bytes())}}
    for form, model in persistent_bytes.items():
        result["models"][f"persistent_{form}"] = op_summary(model)
    mixed_weights = sum(layer.bases[0].size for layer in folded.values())
    result["non_shared_weights"] = int(mixed_weights)
    result["float32_bases_mb"] = round(mixed_weights * K * 4 / 1e6, 1)

    # Correctness: against Keras and the static float32 template, same coefficients.
    static_it = static_session(static_bytes)
    sessions = {form: Persistent(model, folded) for form, model in persistent_bytes.items()}
    correctness = {}
    for form, ps in sessions.items():
        worst_keras, worst_static = 0.0, 0.0
        for c in coeff_sets:
            ps.write(c)
            got = ps.invoke(image).copy()
            ref = net.specialist([image, c[None]], training=False).numpy()
            worst_keras = max(worst_keras, float(np.abs(got - ref).max() / np.abs(ref).max()))
        ps.write(coeff_sets[0])
        got = ps.invoke(image).copy()
        static_it.set_tensor(static_it.get_input_details()[0]["index"], image)
        static_it.invoke()
        ref = static_it.get_tensor(static_it.get_output_details()[0]["index"])
        worst_static = float(np.abs(got - ref).max() / np.abs(ref).max())
        correctness[form] = {"coefficient_sets": len(coeff_sets),
                             "max_rel_vs_keras": float(f"{worst_keras:.3g}"),
                             "max_rel_vs_static_float32_template": float(f"{worst_static:.3g}"),
                             "same_top1_vs_static": bool(np.argmax(got) == np.argmax(ref))}
    result["correctness"] = correctness

    print("mix variants", flush=True)
    result["mix_variants"] = mix_variants(folded, coeff_sets[1], args.runs, args.rounds)

    # Timing, interleaved rounds.
    plain_it = static_session(plain_int8)

    def invoke_static_image(it, x):
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()

    def invoke_static(it):
        invoke_static_image(it, image)

    from basisnet_deploy.artifacts.fast_synthesis import FastSynthesizer
    from basisnet_deploy.runtime.deployment import Deployment
    from basisnet_deploy.runtime.sessions import LiteRTSession

    dep = Deployment(work / "tflite-int8")
    light_it = static_session(dep.model("lightweight"))
    light_image = rng.uniform(-1, 1, (1, arch.light_resolution, arch.light_resolution, 3)).astype(np.float32)
    presynth = dep.presynth()
    fast = FastSynthesizer(presynth.template, presynth.table, bases=presynth.bases)
    template = LiteRTSession(bytes(fast.synthesize(coeff_sets[0])))
    recreated = iter(range(10**9))

    def recreate():  # today's exact path: synthesize the int8 template, prepare a new interpreter
        return LiteRTSession(bytes(fast.synthesize(coeff_sets[next(recreated) % 4])))

    jobs = {"lightweight_invoke": lambda: invoke_static_image(light_it, light_image),
            "static_float32_invoke": lambda: invoke_static(static_it),
            "plain_int8_invoke": lambda: invoke_static(plain_it),
            "int8_template_invoke": lambda: template.run({"image": image}),
            "int8_template_synthesize_and_prepare": recreate}
    for form, ps in sessions.items():
        jobs[f"persistent_{form}_invoke"] = lambda ps=ps: ps.invoke(image)
        jobs[f"persistent_{form}_write"] = lambda ps=ps: ps.write(coeff_sets[1])
        jobs[f"persistent_{form}_write_invoke"] = lambda ps=ps: (ps.write(coeff_sets[2]), ps.invoke(image))
    for fn in jobs.values():
        for _ in range(5):
            fn()
    names = list(jobs)
    rounds = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            rounds[n].append(statistics.median(timed(jobs[n]) for _ in range(args.runs)))
        print(f"round {r + 1}/{args.rounds}", flush=True)
    med = {n: round(statistics.median(v), 3) for n, v in rounds.items()}
    result["median_ms"] = med
    result["rounds_ms"] = {n: [round(x, 3) for x in v] for n, v in rounds.items()}
    for form in sessions:
        result[f"persistent_{form}_vs"] = {
            "invoke_over_static_float32": round(med[f"persistent_{form}_invoke"] / med["static_float32_invoke"], 3),
            "invoke_over_plain_int8": round(med[f"persistent_{form}_invoke"] / med["plain_int8_invoke"], 3),
            "extra_invoke_ms_over_static_float32": round(med[f"persistent_{form}_invoke"] - med["static_float32_invoke"], 3),
            "host_overhead_ms (write + extra invoke)": round(
                med[f"persistent_{form}_write"] + med[f"persistent_{form}_invoke"] - med["static_float32_invoke"], 3)}
    # What two cores can do at best, from the medians above (every stage's CPU time summed and
    # spread perfectly over both cores; and the one-thread specialist stage alone).
    plain_fps = 1000 / med["plain_int8_invoke"]
    today = med["lightweight_invoke"] + med["int8_template_synthesize_and_prepare"] + med["int8_template_invoke"]
    bounds = {"plain_int8_fps (one frame after another, 1 thread)": round(plain_fps, 1),
              "recreate_cpu_ms_per_frame (LM + synthesize + prepare + int8 invoke)": round(today, 3),
              "recreate_two_core_bound_vs_plain": round(2000 / today / plain_fps, 3),
              "recreate_synthesis_stage_bound_vs_plain": round(
                  1000 / med["int8_template_synthesize_and_prepare"] / plain_fps, 3)}
    for form in sessions:
        cpu = med["lightweight_invoke"] + med[f"persistent_{form}_write"] + med[f"persistent_{form}_invoke"]
        bounds[f"persistent_{form}_cpu_ms_per_frame (LM + write + invoke)"] = round(cpu, 3)
        bounds[f"persistent_{form}_two_core_bound_vs_plain"] = round(2000 / cpu / plain_fps, 3)
        bounds[f"persistent_{form}_specialist_stage_bound_vs_plain"] = round(
            1000 / med[f"persistent_{form}_invoke"] / plain_fps, 3)
    result["bounds"] = bounds
    if args.pipeline_frames:
        del sessions, static_it, plain_it
        best = "batch_matmul" if "batch_matmul" in persistent_bytes else next(iter(persistent_bytes))
        result["end_to_end"] = {"form": best, **end_to_end(work / "tflite-int8", persistent_bytes[best], folded,
                                                             args.pipeline_frames, args.pipeline_rounds)}
    result["load_average_at_end"] = round(os.getloadavg()[0], 2)
    write_result(result, args.json)


if __name__ == "__main__":
    main()
