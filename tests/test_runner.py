"""The two-stage runner, early exit, threshold calibration, bench and predict."""

import json
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image

from basisnet_deploy.runtime.backends import DelegateUnavailable, make_factory
from basisnet_deploy.cli import main
from basisnet_deploy.data import digits
from basisnet_deploy.runtime.deployment import Deployment
from basisnet_deploy.runtime.runner import ResynthesisPolicy, RunnerOptions, TwoStageRunner, softmax


@pytest.fixture(scope="module")
def dep(float_tflite):
    return Deployment(float_tflite[0])


@pytest.fixture(scope="module")
def frames(dep):
    return [dep.frame(im) for im in digits().images[:40]]


@pytest.fixture(scope="module")
def threshold(dep, frames):
    """Between the middle distinct LM confidences, so some frames exit early and some not."""
    lm = make_factory("litert", "xnnpack")(dep.path("lightweight"))
    conf = sorted({float(softmax(lm.run({"image": f[0]})["logits"][0]).max()) for f in frames})
    assert len(conf) >= 2
    mid = len(conf) // 2
    return (conf[mid - 1] + conf[mid]) / 2


class Counting:
    """A factory whose sessions count runs and can fail on the n-th one."""

    def __init__(self, fail_at=None):
        self.inner, self.calls, self.fail_at = make_factory("litert", "xnnpack"), 0, fail_at
        self.lock = threading.Lock()

    def __call__(self, path, model=None):
        session = self.inner(path, model)
        outer = self

        class Wrapped:
            def run(self, feeds):
                with outer.lock:
                    outer.calls += 1
                    n = outer.calls
                if outer.fail_at is not None and n >= outer.fail_at:
                    raise RuntimeError(f"injected fault at run {n}")
                return session.run(feeds)
        return Wrapped()


@pytest.mark.parametrize("form", ["coefficient", "presynth"])
def test_modes_agree_keep_order_and_exits_skip_the_specialist(dep, frames, threshold, form):
    out = {}
    for mode in ("sequential", "pipelined"):
        spec = Counting()
        runner = TwoStageRunner(dep, make_factory("litert", "xnnpack"), spec, RunnerOptions(threshold=threshold, form=form, mode=mode))
        results = list(runner.run(frames))
        assert [r.index for r in results] == list(range(len(frames)))
        exits = [r for r in results if r.stage == "lightweight"]
        assert 0 < len(exits) < len(frames)
        assert all("specialist" not in r.times_ms for r in exits)
        assert spec.calls == len(frames) - len(exits)  # exits never touch the specialist
        out[mode] = [(r.label, r.stage, round(r.confidence, 5)) for r in results]
    assert out["sequential"] == out["pipelined"]


def _basisnet_threads():
    return [t for t in threading.enumerate() if t.name.startswith("basisnet-") and t.is_alive()]


def _paced(frames, seconds=0.001):
    """A camera: one frame every ``seconds`` (keep-latest drops most of an instant source)."""
    for frame in frames:
        time.sleep(seconds)
        yield frame


@pytest.mark.parametrize("drop", ["block", "keep-latest"])
@pytest.mark.parametrize("stage", ["light", "specialist"])
def test_a_fault_in_either_stage_reaches_the_caller_and_shuts_down(dep, frames, stage, drop):
    faulty = Counting(fail_at=5)
    light = faulty if stage == "light" else make_factory("litert", "xnnpack")
    spec = faulty if stage == "specialist" else make_factory("litert", "xnnpack")
    runner = TwoStageRunner(dep, light, spec, RunnerOptions(threshold=None, form="coefficient", mode="pipelined",
                                                            queue_size=2, drop=drop))
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="injected fault"):
        list(runner.run(_paced(frames * 5)))
    deadline = time.perf_counter() + 10.0  # generous: CI's 2 cores are shared with other work
    while _basisnet_threads() and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert not _basisnet_threads()
    assert time.perf_counter() - start < 20  # shut down, not hung until a queue times out


def test_a_failing_frame_source_reaches_the_caller(dep, frames):
    def source():
        yield from frames[:3]
        raise ValueError("camera unplugged")
    runner = TwoStageRunner(dep, make_factory("litert", "xnnpack"), make_factory("litert", "xnnpack"), RunnerOptions(threshold=None, form="coefficient", mode="pipelined"))
    with pytest.raises(ValueError, match="camera unplugged"):
        list(runner.run(source()))


@pytest.mark.parametrize("drop", ["block", "keep-latest"])
def test_stopping_mid_stream_does_not_deadlock(dep, frames, drop):
    runner = TwoStageRunner(dep, make_factory("litert", "xnnpack"), make_factory("litert", "xnnpack"),
                            RunnerOptions(threshold=None, form="presynth", mode="pipelined", queue_size=1,
                                          drop=drop))
    gen = runner.run(_paced(frames * 10))
    first = [next(gen).index for _ in range(3)]
    assert first == sorted(set(first)) and (drop == "keep-latest" or first == [0, 1, 2])
    start = time.perf_counter()
    gen.close()
    assert time.perf_counter() - start < 1.5
    assert not _basisnet_threads()


def test_resynthesis_policy(dep, frames):
    f = make_factory("litert", "xnnpack")
    exact = TwoStageRunner(dep, f, f, RunnerOptions(threshold=None, form="presynth", mode="sequential"))
    list(exact.run(frames[:10]))
    assert exact.resyntheses == 10  # every frame has its own coefficients
    loose = TwoStageRunner(dep, f, f, RunnerOptions(threshold=None, form="presynth", mode="sequential", policy=ResynthesisPolicy(tolerance=2.0)))
    list(loose.run(frames[:10]))
    assert loose.resyntheses == 1
    every = TwoStageRunner(dep, f, f, RunnerOptions(threshold=None, form="presynth", mode="sequential", policy=ResynthesisPolicy(tolerance=2.0, every=4)))
    list(every.run(frames[:10]))
    assert every.resyntheses == 3


def test_threshold_calibration_meets_its_constraint(float_tflite, tmp_path):
    from basisnet_deploy.report import threshold as th

    copy = tmp_path / "exp"
    shutil.copytree(float_tflite[0], copy)
    d = Deployment(copy)
    ds = digits()
    result = th.tradeoff(d, make_factory("litert", "xnnpack"), ds.images[:60], ds.labels[:60])
    chosen = th.choose(result, max_drop=0.5)
    assert chosen["accuracy"] >= result["no_exit_accuracy"] - 0.005
    budget = (result["full_madds"] + min(c["avg_madds"] for c in result["curve"])) / 2
    assert th.choose(result, target_madds=budget)["avg_madds"] <= budget
    th.write_threshold(copy, chosen, result, {"max_drop_points": 0.5})
    th.plot(result, chosen, tmp_path / "curve.png")
    assert Deployment(copy).threshold == chosen["threshold"]
    png = np.asarray(Image.open(tmp_path / "curve.png").convert("RGB")).astype(int)
    assert png.shape == (460, 720, 3)  # matplotlib, 7.2 x 4.6 in at 100 dpi
    red = (png[..., 0] > 170) & (png[..., 1] < 80) & (png[..., 2] < 80)  # the chosen point
    blue = (png[..., 2] > 150) & (png[..., 0] < 80)  # the curve
    assert red.sum() > 30 and blue.sum() > 100


def test_bench_json_has_the_documented_keys(float_tflite, tmp_path, capsys):
    out = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as code:
        main(["bench", str(float_tflite[0]), "--frames", "12", "--warmup", "2", "--json",
              "--json-out", str(out)])
    assert code.value.code == 0
    r = json.loads(out.read_text())
    printed = json.loads(capsys.readouterr().out)  # the same document on stdout
    assert printed["stages"].keys() == r["stages"].keys() and printed["frames"] == r["frames"] == 12
    assert "NaN" not in out.read_text()
    for mode in ("sequential", "pipelined"):
        assert r["runners"][mode]["throughput_fps"] > 0
        assert r["runners"][mode]["latency_ms"]["p50"] > 0
    for stage in ("lightweight", "specialist", "synthesis"):
        assert r["stages"][stage]["latency_ms"]["p50"] > 0
    assert r["delegate"] == "xnnpack" and r["runtime"] == "litert"
    assert 0 <= r["early_exit_rate"] <= 1 and r["avg_madds"] > 0


def test_unavailable_delegates_fail_fast_with_exit_2(float_tflite, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("VK_ICD_FILENAMES", str(tmp_path / "no-gpu.json"))  # no GPU, whatever the machine
    with pytest.raises(SystemExit) as code:
        main(["bench", str(float_tflite[0]), "--delegate", "nnapi"])
    err = capsys.readouterr().err
    assert code.value.code == 2 and "NNAPI exists only on Android" in err and "Available here" in err
    # no GPU device, or (the WebGPU plugin registered earlier in this process) nothing to try
    with pytest.raises(DelegateUnavailable, match=r"--delegate gpu \(onnxruntime\): .*--allow-fallback"):
        make_factory("onnxruntime", "gpu")
    fallback = make_factory("onnxruntime", "gpu", allow_fallback=True)
    assert fallback.processor == "CPU (fallback)"
    assert fallback.fallback_note.startswith("gpu unavailable (") and fallback.fallback_note.endswith("; ran on CPU EP")


def test_predict_prints_class_confidence_and_stage(float_tflite, tmp_path, capsys):
    paths = []
    for i, im in enumerate(digits().images[:2]):
        paths.append(str(tmp_path / f"{i}.png"))
        im.save(paths[-1])
    with pytest.raises(SystemExit) as code:
        main(["predict", str(float_tflite[0]), *paths, "--json"])
    assert code.value.code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in rows] == paths
    assert all(r["stage"] == "specialist" and 0 < r["confidence"] <= 1 for r in rows)
    assert all(r["specialist_processor"] == "CPU (XNNPACK)" and r["fallback"] is None for r in rows)


def test_bench_reports_the_ratio_to_an_exported_plain_baseline(ckpt, tmp_path):
    from basisnet_deploy.report.bench import BenchOptions, bench
    from tests.conftest import export
    from tests.conftest import FAST

    export(ckpt, tmp_path / "b", target="tflite", specialist="presynth", baseline=True, **FAST)
    r = bench(tmp_path / "b", BenchOptions(frames=10, warmup=1, runner="sequential"))
    assert r.stages["baseline_plain"].latency_ms["p50"] > 0
    assert r.specialist_vs_baseline_p50 == pytest.approx(
        r.stages["specialist"].latency_ms["p50"] / r.stages["baseline_plain"].latency_ms["p50"], rel=1e-2)
    assert "pipelined" not in r.runners
    assert r.baseline_fps > 0
    assert r.vs_baseline_fps == {"sequential": pytest.approx(
        r.runners["sequential"].throughput_fps / r.baseline_fps, rel=1e-2)}


def test_thread_counts_are_chosen_from_the_cores_and_checked():
    from basisnet_deploy.common.errors import UserError
    from basisnet_deploy.runtime.backends import stage_threads

    assert stage_threads(cores=2) == {"lightweight": 1, "synthesis": 1, "specialist": 1, "cores": 2}
    assert stage_threads(cores=8)["specialist"] == 6
    assert stage_threads(3, cores=8)["specialist"] == 3
    with pytest.raises(UserError, match="--threads 9: this machine has 8 cores"):
        stage_threads(9, cores=8)


def test_bench_at_a_fixed_input_rate_with_keep_latest(float_tflite):
    from basisnet_deploy.report.bench import BenchOptions, bench

    r = bench(float_tflite[0], BenchOptions(frames=20, warmup=2, runner="pipelined",
                                            input_fps=200.0, drop="keep-latest"))
    run = r.runners["pipelined"]
    assert run.input_fps == 200.0
    # Offered at 200 fps, answered no faster than offered (the pacing really happened).
    assert run.throughput_fps <= 200.0 * 1.05
    assert run.latency_ms["count"] + run.dropped == 20  # every frame answered or counted


class ThreadLog:
    """A factory recording the thread that builds each synthesized session and runs it."""

    def __init__(self):
        self.inner, self.built, self.ran = make_factory("litert", "xnnpack"), [], []

    def __call__(self, path, model=None):
        if model is not None:
            self.built.append(threading.current_thread().name)
        session = self.inner(path, model)
        log = self

        class Wrapped:
            def run(self, feeds):
                log.ran.append(threading.current_thread().name)
                return session.run(feeds)
        return Wrapped()


def test_pipelined_synthesis_runs_on_its_own_thread_once_per_frame(dep, frames):
    """Exact per-frame BasisNet: every frame gets its own kernels, built on the synthesis
    thread, while the specialist thread only runs sessions."""
    log = ThreadLog()
    runner = TwoStageRunner(dep, make_factory("litert", "xnnpack"), log,
                            RunnerOptions(form="presynth", mode="pipelined"))
    results = list(runner.run(frames[:12]))
    assert [r.index for r in results] == list(range(12))
    assert runner.resyntheses == 12 and len(log.built) == 12
    assert set(log.built) == {"basisnet-stage1"}  # LM, synthesis, specialist = stage0..2
    assert set(log.ran) == {"basisnet-stage2"}
    assert all("synthesis" in r.times_ms and "specialist" in r.times_ms for r in results)


def test_synthesized_sessions_are_prepared_on_the_synthesis_thread(dep, frames):
    """LiteRT prepares a model (XNNPACK packs its weights, about 4 ms at full size) holding
    the GIL. A session must do that when it is opened, on the synthesis thread, and not in its
    first run on the specialist's thread, where it stalled every stage."""
    ps = dep.presynth()
    session = make_factory("litert", "xnnpack")(ps.path, ps.template)
    interpreter = session.interpreter
    index = interpreter.get_input_details()[0]["index"]
    interpreter.get_tensor(index)  # LiteRT raises "Tensor data is null" before allocation


def test_keep_latest_lm_starts_a_frame_only_once_the_next_stage_took_the_previous():
    """keep-latest: a frame that the LM finishes while the next stage is still busy waits
    and ages; so the LM waits first, then takes the newest frame (the issue's camera case)."""
    from basisnet_deploy.runtime.runner import _Pipeline

    waiting_when_lm_started = []
    pipeline = None

    def lm():
        def run(item):
            waiting_when_lm_started.append(len(pipeline.queues[1].queue))
            return item
        return run

    def slow():
        def run(item):
            time.sleep(0.005)
            return item
        return run

    pipeline = _Pipeline([lm, slow], queue_size=4, last_queue=1, drop="keep-latest",
                         stop=threading.Event())
    def camera(frames=300):  # 1 ms a frame, five times what the slow stage can take
        for i in range(frames):
            time.sleep(0.001)
            yield i, None

    answered = [item.index for item in pipeline.run(camera())]
    assert answered == sorted(answered) and len(answered) + pipeline.dropped == 300
    assert len(waiting_when_lm_started) > 10
    assert pipeline.dropped > 0
    assert max(waiting_when_lm_started) == 0


def test_keep_latest_drops_stale_frames_and_counts_them(dep, frames):
    """A source faster than the pipeline: frames are dropped, never reordered, all accounted."""
    slow = Counting()

    class Slow(Counting):
        def __call__(self, path, model=None):
            session = slow(path, model)

            class Wrapped:
                def run(self, feeds):
                    time.sleep(0.02)
                    return session.run(feeds)
            return Wrapped()

    runner = TwoStageRunner(dep, make_factory("litert", "xnnpack"), Slow(),
                            RunnerOptions(form="coefficient", mode="pipelined", queue_size=1,
                                          drop="keep-latest"))
    results = list(runner.run(frames * 2))
    indices = [r.index for r in results]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert runner.dropped > 0
    assert len(results) + runner.dropped == len(frames) * 2
    assert indices[-1] == len(frames) * 2 - 1  # the newest frame is always answered


def test_long_runner_runs_report_their_progress():
    from basisnet_deploy.report.bench import _reporting

    said = []

    def slow():
        for i in range(4):
            time.sleep(0.02)
            yield i
    assert list(_reporting(slow(), 4, "sequential", said.append, every_s=0.01)) == [0, 1, 2, 3]
    assert said and all(m.startswith("sequential: ") and "fps" in m and "s left" in m for m in said)
    assert not any(m.startswith("sequential: 4/4") for m in said)  # the end is reported by the table


def test_each_pipeline_stage_is_closed_by_its_own_thread_after_its_last_use():
    """A stage still busy when the caller stops waiting (past the 1 s join) is closed by its
    worker once its call returns, never by the caller while in use."""
    from basisnet_deploy.runtime.runner import _Pipeline

    log, lock = [], threading.Lock()
    busy = threading.Event()  # set when the slow stage has started its long call

    class Stage:
        def __init__(self, name, delay):
            self.name, self.delay, self.closed = name, delay, False
            self.owner = threading.current_thread().name
            self.frames = 0

        def __call__(self, item):
            if self.closed:
                raise AssertionError(f"{self.name} used after close")
            self.frames += 1
            if self.frames == 2 and self.delay:
                busy.set()
                time.sleep(self.delay)  # still busy when the caller has given up on it
            with lock:
                log.append((self.name, "ran", item.index, self.closed))
            return item

        def close(self):
            with lock:
                log.append((self.name, "closed", threading.current_thread().name == self.owner,
                            self.closed))
            self.closed = True

    pipeline = _Pipeline([lambda: Stage("lm", 0.0), lambda: Stage("slow", 1.5)], queue_size=2,
                         last_queue=1, drop="block", stop=threading.Event())
    results = pipeline.run((i, None) for i in range(10))
    assert next(results).index == 0
    assert busy.wait(10)  # stop only once the slow call is under way, however slow the machine
    results.close()  # the caller stops: stop set, threads joined for at most 1 s each
    deadline = time.monotonic() + 10
    while _basisnet_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _basisnet_threads()
    closes = [e for e in log if e[1] == "closed"]
    assert sorted(closes) == [("lm", "closed", True, False), ("slow", "closed", True, False)]
    slow = [e for e in log if e[0] == "slow"]
    assert slow[-1][1] == "closed" and all(not e[3] for e in slow)  # no use after close
    assert ("slow", "ran", 1, False) in slow  # the busy call finished before the close


@pytest.mark.parametrize("mode", ["sequential", "pipelined"])
def test_the_synthesis_stage_is_closed_on_the_thread_that_made_it(dep, frames, monkeypatch, mode):
    from basisnet_deploy.runtime import runner as runner_module

    made, closed = [], []
    stage = runner_module._SynthesisStage
    init, close = stage.__init__, stage.close

    def recording_init(self, *args, **kwargs):
        made.append(threading.current_thread().name)
        init(self, *args, **kwargs)

    def recording_close(self):
        closed.append(threading.current_thread().name)
        close(self)

    monkeypatch.setattr(stage, "__init__", recording_init)
    monkeypatch.setattr(stage, "close", recording_close)
    runner = TwoStageRunner(dep, make_factory("litert", "xnnpack"), make_factory("litert", "xnnpack"),
                            RunnerOptions(form="presynth", mode=mode))
    results = list(runner.run(frames[:4]))
    assert len(results) == 4 and runner.resyntheses == 4
    deadline = time.monotonic() + 10
    while _basisnet_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert made == closed and len(made) == 1
    assert made[0] == ("basisnet-stage1" if mode == "pipelined" else threading.current_thread().name)


def test_stage_outputs_runs_every_frame_through_both_stages(dep, frames):
    from basisnet_deploy.runtime.runner import stage_outputs

    outs = list(stage_outputs(dep, make_factory("litert", "xnnpack"), "presynth", frames[:3]))
    assert len(outs) == 3 and all(o.logits is not None and o.coefficients.ndim == 2 for o in outs)


@pytest.mark.parametrize("command", ["predict", "bench"])
@pytest.mark.parametrize("gpu", [False, True])
@pytest.mark.parametrize("library", ["missing", "text", "elf"])
def test_a_bad_delegate_path_is_one_line_and_exit_2(float_tflite, tmp_path, capsys, command, gpu,
                                                   library):
    """Missing, not a library, or a library that is not a LiteRT delegate: with or without
    --delegate gpu, one Error line and exit 2 (never "'Delegate' object has no attribute")."""
    image = tmp_path / "0.png"
    digits().images[0].save(image)
    path = {"missing": tmp_path / "no-such.so", "text": tmp_path / "notes.so",
            "elf": tmp_path / "libnotadelegate.so"}[library]
    if library == "text":
        path.write_text("not a library\n")
    if library == "elf":  # a real shared library that exports no delegate
        shutil.copy(numpy_library(), path)
    argv = {"predict": ["predict", str(float_tflite[0]), str(image)],
            "bench": ["bench", str(float_tflite[0]), "--frames", "4"]}[command]
    argv += ["--delegate-path", str(path)] + (["--delegate", "gpu"] if gpu else [])
    with pytest.raises(SystemExit) as code:
        main(argv)
    err = capsys.readouterr().err
    assert code.value.code == 2, err
    assert "Traceback" not in err and "_library" not in err and "Exception ignored" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and str(path) in errors[0], err


def test_verify_has_no_delegate_path(float_tflite, capsys):
    with pytest.raises(SystemExit) as code:
        main(["verify", str(float_tflite[0]), "--delegate-path", "x.so"])
    assert code.value.code == 2 and "No such option '--delegate-path'" in capsys.readouterr().err


def numpy_library() -> str:
    """A shared library that every install has: numpy's compiled core."""
    import numpy.core._multiarray_umath as core

    return core.__file__


@pytest.mark.parametrize("stage, output", [("light", "logits"), ("light", "coefficients"),
                                           ("specialist", "logits")])
def test_nan_outputs_stop_the_run_naming_the_artifact_and_frame(dep, frames, stage, output):
    """An artifact that outputs NaN is an error naming it and the frame, never an answer:
    argmax read a NaN row as class 0 and predict printed that class."""
    from basisnet_deploy.common.errors import UserError

    class NaNAtFrame3:
        def __init__(self):
            self.inner, self.runs = make_factory("litert", "xnnpack"), 0

        def __call__(self, path, model=None):
            session, outer = self.inner(path, model), self

            class Wrapped:
                def run(self, feeds):
                    out = dict(session.run(feeds))
                    outer.runs += 1
                    if outer.runs == 4:
                        out[output] = np.full_like(out[output], np.nan)
                    return out
            return Wrapped()

    nan = NaNAtFrame3()
    light = nan if stage == "light" else make_factory("litert", "xnnpack")
    spec = nan if stage == "specialist" else make_factory("litert", "xnnpack")
    role = "lightweight" if stage == "light" else "specialist_coefficient"
    runner = TwoStageRunner(dep, light, spec, RunnerOptions(threshold=None, form="coefficient", mode="sequential"))
    with pytest.raises(UserError, match=rf"{dep.path(role).name}: NaN or infinite outputs on frame 3"):
        list(runner.run(frames[:8]))


ONNX_XNNPACK_EP = "XnnpackExecutionProvider"


def test_xnnpack_on_onnxruntime_says_which_execution_provider_ran(monkeypatch):
    """--delegate xnnpack (the default) on an ONNX export: the XNNPACK EP where onnxruntime
    has it; else the CPU EP, and the processor says so, never labelled XNNPACK."""
    import onnxruntime as ort

    real = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: [p for p in real if p != ONNX_XNNPACK_EP])
    cpu = make_factory("onnxruntime", "xnnpack")
    assert cpu.providers == ["CPUExecutionProvider"] and cpu.fallback_note is None
    assert cpu.processor == f"CPU EP (this onnxruntime build has no {ONNX_XNNPACK_EP})"
    assert make_factory("onnxruntime", "cpu").processor == "CPU EP"  # asked for the CPU EP
    monkeypatch.setattr(ort, "get_available_providers", lambda: [ONNX_XNNPACK_EP, *real])
    xnn = make_factory("onnxruntime", "xnnpack", threads=2)
    assert xnn.providers == [(ONNX_XNNPACK_EP, {"intra_op_num_threads": "2"}), "CPUExecutionProvider"]
    assert xnn.fallback_note is None and xnn.processor.startswith("CPU: XNNPACK EP")


def test_onnx_bench_with_the_default_delegate_says_the_cpu_ep_ran(float_onnx):
    """bench on an ONNX export printed 'delegate xnnpack' alone for figures the CPU EP
    measured."""
    import onnxruntime as ort

    from basisnet_deploy.cli.render import bench_text
    from basisnet_deploy.common.jsonable import jsonable
    from basisnet_deploy.report.bench import BenchOptions, bench

    r = bench(float_onnx[0], BenchOptions(runtime="onnxruntime", frames=4, warmup=1, runner="sequential"))
    doc, text = jsonable(r), "\n".join(bench_text(r))
    assert doc["delegate"] == "xnnpack"  # as asked
    if ONNX_XNNPACK_EP in ort.get_available_providers():
        assert doc["fallback"] is None and doc["processors"]["specialist"].startswith("CPU: XNNPACK EP")
    else:
        ran = f"CPU EP (this onnxruntime build has no {ONNX_XNNPACK_EP})"
        assert doc["fallback"] is None and doc["processors"] == {"lightweight": ran, "specialist": ran}
        assert f"processors: lightweight {ran}, specialist {ran}" in text


def test_the_stage_bound_includes_synthesis_with_its_session_recreation(float_tflite):
    """Presynth: synthesis is a pipeline stage of its own (re-creating the session on its
    thread); the stage bound left it out and printed a rate no runner can reach."""
    from basisnet_deploy.cli.render import bench_text
    from basisnet_deploy.report.bench import BenchOptions, bench

    r = bench(float_tflite[0], BenchOptions(frames=6, warmup=1, runner="sequential", threshold=2.0,
                                            form="presynth"))
    run, recreate = r.runners["sequential"], r.stages["synthesis"].with_session_recreation_ms["p50"]
    assert r.stage_bound_fps <= 1000 / recreate * 1.001  # no faster than its synthesis stage
    assert run.resyntheses == 6 and run.specialist_frames == 6  # every frame re-synthesized
    first_run = r.stages["synthesis"].to_first_output_ms["p50"] - recreate  # each frame a new session's first
    assert r.stage_bound_ms == {"lightweight": r.stages["lightweight"].latency_ms["p50"],
                                "synthesis": pytest.approx(recreate),
                                "specialist": pytest.approx(max(first_run, 0.0), abs=1e-3)}
    assert r.stage_bound_fps == pytest.approx(1000 / max(r.stage_bound_ms.values()), rel=1e-3)
    assert r.stage_bound_by == max(r.stage_bound_ms, key=r.stage_bound_ms.get)
    text = "\n".join(bench_text(r))
    assert "stage-bound throughput 1/max(t_light, t_synthesis, t_specialist)" in text
    assert f"x 6/6 frames re-synthesized" in text
    exits = bench(float_tflite[0], BenchOptions(frames=4, warmup=1, runner="sequential", threshold=0.0,
                                                form="presynth"))  # every frame exits early
    assert exits.stage_bound_ms["specialist"] == exits.stage_bound_ms["synthesis"] == 0.0
    assert exits.stage_bound_by == "lightweight"  # what bounds a run whose frames all exit
    c = bench(float_tflite[0], BenchOptions(frames=4, warmup=1, runner="sequential", form="coefficient"))
    assert set(c.stage_bound_ms) == {"lightweight", "specialist"}  # no synthesis stage to count
    assert "1/max(t_light, t_specialist)" in "\n".join(bench_text(c))


def test_bench_images_counts_the_unreadable_files_it_skipped(float_tflite, tmp_path):
    """As verify and evaluate do: the audit's folder of 9 files, 1 unreadable, gave '10 frames
    from 8 images' and no word of the skipped file."""
    from basisnet_deploy.cli.render import bench_text
    from basisnet_deploy.common.jsonable import jsonable
    from basisnet_deploy.report.bench import BenchOptions, bench

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, im in enumerate(digits().images[:8]):
        im.save(folder / f"{i}.png")
    (folder / "notes.jpg").write_bytes(b"not an image")
    r = bench(float_tflite[0], BenchOptions(frames=10, warmup=1, runner="sequential", images=str(folder)))
    doc = jsonable(r)
    assert doc.get("skipped", {}).get("count") == 1 and sum(doc["skipped"]["by_reason"].values()) == 1
    assert doc["images"] == 8 and doc["frames"] == 10
    assert doc["skipped"]["first"] == [str(folder / "notes.jpg")]
    text = bench_text(r)
    assert "  10 frames from 8 images" in text
    assert any(line.startswith("  skipped 1 unreadable files (") and line.endswith("notes.jpg") for line in text)
    clean = bench(float_tflite[0], BenchOptions(frames=2, warmup=1, runner="sequential"))
    assert jsonable(clean)["skipped"] == {"count": 0, "by_reason": {}, "first": []}
    assert not any("skipped" in line for line in bench_text(clean))


def test_bench_threshold_none_never_exits_and_says_so(float_tflite):
    from basisnet_deploy.cli.render import bench_text
    from basisnet_deploy.report.bench import BenchOptions, bench
    from basisnet_deploy.runtime.runner import NEVER_EXIT

    r = bench(float_tflite[0], BenchOptions(frames=4, warmup=1, runner="sequential", threshold=NEVER_EXIT))
    assert r.threshold is None and r.runners["sequential"].early_exit_rate == 0.0
    assert "/ never exit" in bench_text(r)[0] and "None" not in bench_text(r)[0]


def test_a_recalibration_says_which_threshold_it_replaced(float_tflite, tmp_path, capsys):
    """calibrate-threshold replaces the recorded threshold (calibrated on other images, maybe
    many more): the result names the one it replaced and how many images it came from."""
    exp = tmp_path / "exp"
    shutil.copytree(float_tflite[0], exp)
    for limit in ("40", "20"):
        with pytest.raises(SystemExit) as e:
            main(["calibrate-threshold", str(exp), "--dataset", "digits", "--max-drop", "5", "--limit", limit])
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.count("replaces the ") == 1 and "calibrated on 40 images" in out
