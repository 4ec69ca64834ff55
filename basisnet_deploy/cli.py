"""``basisnet-deploy``: a thin click layer over the Python API.

Every user mistake is a :class:`~basisnet_deploy.common.errors.UserError`; :func:`main` prints it as
one ``Error:`` line and exits 2, never with a traceback. TensorFlow is imported only by the
commands that need it, so ``cost`` and ``--help`` answer at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import click

from basisnet_deploy.model.config import BACKBONES, PRESETS, STRATEGIES, ArchConfig, ConfigError, TrainSettings
from basisnet_deploy.data import Preprocessing
from basisnet_deploy.common.errors import UserError

PLAIN_ARCHS = ("mv3-large", "mv3-small", "mv2")


_TRAIN_DEFAULTS = TrainSettings()


def _nonshared(ctx, param, value):
    if value is None:
        return None
    try:
        lo, hi = (int(v) for v in value.split("-"))
    except ValueError:
        raise click.BadParameter(f"expected a block range like 8-15, got {value!r}") from None
    return (lo, hi)


def arch_options(fn):
    """The architecture flags shared by ``train`` and ``cost``; unset flags keep the preset."""
    options = [
        click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
                     help="Start from a preset: 'mv3' and 'mv2' are the paper's BasisNets, "
                          "'demo' the small digits model. Flags below override it."),
        click.option("--backbone", type=click.Choice(sorted(BACKBONES)), default=None,
                     help="mv3: MV3-Small LM + MV3-Large specialist; mv2: MV2 for both."),
        click.option("--bases", "-k", type=int, default=None, help="Bases per non-shared block (1-128)."),
        click.option("--nonshared", callback=_nonshared, default=None, metavar="A-B",
                     help="Non-shared block range of the specialist, e.g. 8-15 (the paper's L8-L15)."),
        click.option("--width", type=float, default=None, help="Specialist width multiplier."),
        click.option("--resolution", type=int, default=None, help="Specialist input size in pixels."),
        click.option("--light-width", type=float, default=None, help="Lightweight-model width multiplier."),
        click.option("--light-resolution", type=int, default=None,
                     help="Lightweight-model input size in pixels."),
        click.option("--classes", type=int, default=None, help="Number of classes."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _arch_from_flags(preset, backbone, bases, nonshared, width, resolution, light_width,
                     light_resolution, classes, default_preset="mv3") -> ArchConfig:
    base = PRESETS[preset or default_preset]
    if backbone and backbone != base.backbone and not preset:
        base = PRESETS[backbone]
    overrides = {k: v for k, v in dict(
        backbone=backbone, bases=bases, nonshared=nonshared, width=width, resolution=resolution,
        light_width=light_width, light_resolution=light_resolution, num_classes=classes,
    ).items() if v is not None}
    return dataclasses.replace(base, **overrides).validate(where="option")


def _fmt(n: int) -> str:
    return f"{n / 1e6:,.2f}M"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="basisnet-deploy")
def cli():
    """Train, evaluate and cost BasisNet two-stage classifiers (export and on-device
    runners are being built; see README "Status").

    \b
    Data flows one way:
      checkpoint -> model -> artifacts + manifest -> runtime -> runner -> report
    \b
    Start with:
      basisnet-deploy train --dataset digits --out ckpt/     # the small demo model
      basisnet-deploy evaluate ckpt/                         # held-out top-1 per stage
      basisnet-deploy cost ckpt/                             # MAdds and params per stage
    """


@cli.command()
@click.argument("checkpoint", required=False, type=click.Path(file_okay=False))
@arch_options
@click.option("--plain", type=click.Choice(PLAIN_ARCHS), default=None,
              help="Cost a plain MobileNet instead of a BasisNet (uses --width/--resolution).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def cost(checkpoint, plain, as_json, **flags):
    """Multiply-adds and parameters of a BasisNet, per stage, or of a plain MobileNet.

    Give a CHECKPOINT directory, or architecture flags (defaults: the paper's BasisNet-MV3,
    1000 classes). MAdds count conv and dense multiply-adds plus basis synthesis (K x P per
    image); params count weights plus one folded-BN bias per channel. With --json the
    top-level 'madds' and 'params' are the totals for what was asked.
    """
    from basisnet_deploy.model import cost as costs

    if plain:
        result = costs.plain_cost(plain, flags["width"] or 1.0, flags["resolution"] or 224,
                                  flags["classes"] or 1000)
    else:
        if checkpoint:
            if any(v is not None for v in flags.values()):
                raise UserError("cost: give either a CHECKPOINT or architecture flags, not both")
            from basisnet_deploy.model.checkpoint import load_config

            arch = load_config(checkpoint).architecture
        else:
            arch = _arch_from_flags(**flags)
        result = {**costs.basisnet_cost(arch), "architecture": dataclasses.asdict(arch)}
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if plain:
        click.echo(f"{plain} {result['network']['width']}x{result['network']['resolution']}, "
                   f"{result['network']['classes']} classes")
        click.echo(f"  MAdds {_fmt(result['madds'])}   params {_fmt(result['params'])}")
        return
    a = result["architecture"]
    click.echo(f"BasisNet-{a['backbone'].upper()}: K={a['bases']}, non-shared "
               f"L{a['nonshared'][0]}-L{a['nonshared'][1]}, specialist {a['width']}x"
               f"{a['resolution']}, LM {a['light_width']}x{a['light_resolution']}, "
               f"{a['num_classes']} classes")
    click.echo(f"  {'stage':<14}{'MAdds':>12}{'params':>12}")
    for name, st in result["stages"].items():
        click.echo(f"  {name:<14}{_fmt(st['madds']):>12}{_fmt(st['params']):>12}")
    click.echo(f"  {'pipeline':<14}{_fmt(result['madds']):>12}{_fmt(result['params']):>12}")


@cli.command()
@click.option("--dataset", default="digits", show_default=True,
              help="'digits' (ships with scikit-learn) or an image folder DIR/<class>/<images>.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Checkpoint directory to write (config.json + weights).")
@arch_options
@click.option("--epochs", type=int, default=_TRAIN_DEFAULTS.epochs, show_default=True)
@click.option("--batch-size", type=int, default=_TRAIN_DEFAULTS.batch_size, show_default=True)
@click.option("--learning-rate", type=float, default=_TRAIN_DEFAULTS.learning_rate,
              show_default=True, help="Peak RMSProp learning rate after the linear warm-up.")
@click.option("--held-out", type=float, default=_TRAIN_DEFAULTS.held_out, show_default=True,
              help="Fraction of each class held out for evaluation.")
@click.option("--resize", type=click.Choice(["squash", "center_crop"]), default=None,
              help="Resize rule stored in the checkpoint (default: squash for digits, "
                   "center_crop for image folders).")
@click.option("--seed", type=int, default=_TRAIN_DEFAULTS.seed, show_default=True,
              help="Seeds data split, shuffling, init and dropout: same seed, same checkpoint.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="default",
              show_default=True, help="tf.distribute strategy the training step runs under.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def train(dataset, out, epochs, batch_size, learning_rate, held_out, resize, seed, strategy,
          as_json, **flags):
    """Train both stages jointly and write a checkpoint directory.

    The default is the embedded demo: digits with the 'demo' preset. Prints held-out top-1
    of the lightweight model alone and of the specialist it drives.
    """
    from basisnet_deploy.model import checkpoint
    from basisnet_deploy import data
    from basisnet_deploy.training.trainer import train as run_training

    if epochs < 1 or batch_size < 1:
        raise UserError("--epochs and --batch-size must be at least 1")
    if not 0 < held_out < 1:
        raise UserError(f"--held-out must be between 0 and 1, got {held_out}")
    if os.path.isdir(out) and os.listdir(out) and not os.path.isfile(os.path.join(out, "config.json")):
        raise UserError(f"{out}: exists and is not a checkpoint directory; choose a new --out")
    arch = _arch_from_flags(**{**flags, "classes": flags["classes"] or 10},
                            default_preset="demo" if dataset == "digits" else "mv3")
    ds = data.load_dataset(dataset)
    if ds.skipped:
        click.echo(f"skipped {sum(ds.skipped.values())} files: {dict(ds.skipped)}", err=True)
    pre = Preprocessing(resize=resize or ("squash" if dataset == "digits" else "center_crop"))
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                             held_out=held_out, seed=seed, strategy=strategy)
    with _progress("train") as progress:
        result = run_training(ds, arch, pre, settings, progress)
    checkpoint.save(out, result.net, result.config)
    held = result.metrics["held_out"]
    if as_json:
        click.echo(json.dumps({"checkpoint": out, **result.metrics}, indent=2))
        return
    click.echo(f"trained {result.metrics['steps']} steps in {result.metrics['train_seconds']:.0f} s "
               f"on {result.metrics['train_examples']} images")
    click.echo(f"held-out top-1 ({held['examples']} images): lightweight "
               f"{held['lightweight_top1']:.1%}, specialist {held['specialist_top1']:.1%}")
    click.echo(f"checkpoint written to {out}")


@cli.command()
@click.argument("checkpoint", type=click.Path(file_okay=False))
@click.option("--dataset", default=None,
              help="'digits' or an image folder. Default: the dataset the checkpoint was "
                   "trained on, with its held-out split re-created from the stored seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def evaluate(checkpoint, dataset, as_json):
    """Top-1 of the lightweight model alone and of the specialist, from a checkpoint.

    On the training dataset it scores the held-out split only (same seed, same split).
    """
    from basisnet_deploy.model import checkpoint as ckpt
    from basisnet_deploy import data
    from basisnet_deploy.training.trainer import evaluate as run_eval

    net, cfg = ckpt.load(checkpoint)
    settings = cfg.training.get("settings", {})
    trained_on = cfg.training.get("dataset")
    dataset = dataset or trained_on
    if not dataset:
        raise UserError(f"{checkpoint}: config.json does not say what it was trained on; "
                        "pass --dataset digits or --dataset DIR")
    ds = data.load_dataset(dataset)
    if ds.class_names != cfg.labels:
        raise UserError(f"{dataset}: classes {list(ds.class_names)[:5]}... do not match the "
                        f"checkpoint's labels {list(cfg.labels)[:5]}...")
    split = "all"
    if dataset == trained_on and "held_out" in settings:
        ds = ds.split(settings["held_out"], settings.get("seed", 0))[1]
        split = "held-out"
    a, pre = cfg.architecture, cfg.preprocessing
    result = {"dataset": dataset, "split": split,
              **run_eval(net, ds.tensors(a.light_resolution, pre), ds.tensors(a.resolution, pre),
                         ds.labels)}
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{dataset} ({split}, {result['examples']} images): lightweight top-1 "
               f"{result['lightweight_top1']:.1%}, specialist top-1 {result['specialist_top1']:.1%}")


@cli.command()
@click.argument("checkpoint", type=click.Path(file_okay=False))
@click.option("--target", type=click.Choice(["tflite", "onnx"]), default="tflite", show_default=True,
              help="tflite: LiteRT flatbuffers; onnx: ONNX models for onnxruntime.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Export directory (default: <checkpoint>/../export-<target>). An existing "
                   "export there is replaced; any other existing directory is refused.")
@click.option("--quantize", type=click.Choice(["int8", "float16", "float32"]), default=None,
              help="Default: int8 when --calibration is given, else float32.")
@click.option("--calibration", default=None, metavar="digits|IMAGE_DIR",
              help="Real images for int8 calibration: 'digits' (its training split) or a "
                   "folder of images; unreadable files are skipped and counted.")
@click.option("--calibration-size", type=click.IntRange(1, 100000), default=200, show_default=True)
@click.option("--specialist", type=click.Choice(["coefficient", "presynth", "all"]), default="all",
              show_default=True, help="Which specialist forms to export.")
@click.option("--input-type", type=click.Choice(["float32", "int8", "uint8"]), default="float32",
              show_default=True, help="Input tensor type of full-int8 TFLite models.")
@click.option("--verify-images", type=click.IntRange(1, 100000), default=100, show_default=True,
              help="Held-out images the export's own verification uses.")
@click.option("--images", default=None, metavar="digits|DIR",
              help="Held-out images for the export's verification (default: the checkpoint's "
                   "held-out digits split, when it was trained on digits).")
@click.option("--coefficient-int8", type=click.Choice(["dynamic", "fakequant"]), default="dynamic",
              show_default=True,
              help="TFLite int8 scheme of the coefficient-input specialist: dynamic range (float "
                   "activations) or fakequant (full int8, synthesized kernels symmetric per-tensor).")
@click.option("--baseline", is_flag=True,
              help="Also export a plain MobileNet of the specialist's shape, so bench reports "
                   "the specialist's latency as a ratio to it.")
@click.option("--seed", type=int, default=0, show_default=True, help="Calibration image selection.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def export(checkpoint, target, out, quantize, calibration, calibration_size, specialist,
           input_type, verify_images, images, coefficient_int8, baseline, seed, as_json):
    """Convert a checkpoint into a lightweight model, specialist(s) and manifest.json.

    \b
    Artifacts in --out:
      lightweight.<ext>             image -> logits, coefficients [1, L, K]
      specialist_coefficient.<ext>  image + coefficients -> logits (synthesis in the graph)
      specialist_presynth.<ext>     static-weight template; with specialist_bases.npz and
                                    specialist_patches.json, synthesize() patches it in place
      manifest.json                 I/O, preprocessing, labels, cost, verification
    Every artifact is verified against the float TF model before the directory lands.
    """
    from basisnet_deploy.export.pipeline import export as run_export

    out = out or os.path.join(os.path.dirname(os.path.abspath(checkpoint)), f"export-{target}")
    steps = iter(range(1, 100))
    manifest = run_export(checkpoint, out, target=target, quantize=quantize,
                          calibration=calibration, calibration_size=calibration_size,
                          specialist=specialist, input_type=input_type,
                          verify_images=verify_images, images=images,
                          coefficient_int8=coefficient_int8, baseline=baseline, seed=seed,
                          progress=lambda msg: click.echo(f"[{next(steps)}] {msg}", err=True))
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
        return
    click.echo(f"exported to {out} in {manifest['export_seconds']:.0f} s")
    for role, entry in manifest["artifacts"].items():
        gpu = entry.get("gpu_compatibility")
        gpu_txt = "" if gpu is None else ("  GPU: compatible" if gpu["compatible"]
                                          else f"  GPU: {len(gpu['warnings'])} incompatible op(s)")
        click.echo(f"  {entry['file']:<30} {entry['bytes'] / 1e6:7.2f} MB  {entry['quantization']}{gpu_txt}")
    _print_verification(manifest["verification"])


def _print_verification(v):
    click.echo(f"verification against the float TF model ({v['images']} {v['source']} images):")
    click.echo(f"  {'artifact':<42}{'top-1 agree':>12}{'accuracy':>10}{'max rel err':>13}")

    def row(name, s):
        acc = f"{s['accuracy']:.1%}" if "accuracy" in s else "-"
        click.echo(f"  {name:<42}{s['top1_agreement']:>12.1%}{acc:>10}{s['logits']['max_rel']:>13.2e}")
    row("lightweight", v["lightweight"])
    for role in ("specialist_coefficient", "specialist_presynth"):
        if role in v:
            row(f"{role} (float LM coeffs)", v[role]["isolated"])
            row(f"{role} (end to end)", v[role]["end_to_end"])
    if "coefficients" in v["lightweight"]:
        c = v["lightweight"]["coefficients"]
        click.echo(f"  lightweight coefficients: max abs err {c['max_abs']:.2e}, mean {c['mean_abs']:.2e}")
    if "presynth_vs_coefficient" in v:
        click.echo(f"  presynth vs coefficient-input, same coefficients: max rel diff "
                   f"{v['presynth_vs_coefficient']['max_rel']:.2e}")


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--dataset", "dataset", default=None, type=click.Choice(["digits"]),
              help="Verify on all of digits (default: the checkpoint's held-out split).")
@click.option("--images", default=None, type=click.Path(file_okay=False),
              help="Held-out images: DIR/<class>/<images> scores accuracy too.")
@click.option("--limit", type=click.IntRange(1, 10**6), default=None, help="At most this many images.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def verify(directory, dataset, images, limit, as_json):
    """Check every artifact of an export against the float TF model from its checkpoint.

    Reports top-1 agreement, accuracy, logit error and coefficient error per artifact.
    """
    from basisnet_deploy.model import checkpoint as ckpt
    from basisnet_deploy.data.datasets import evaluation_set
    from basisnet_deploy.artifacts.manifest import check_files, load_manifest
    from basisnet_deploy.export.verify import verify_directory

    manifest = load_manifest(directory)
    check_files(directory, manifest)
    net, cfg = ckpt.load(manifest["checkpoint"]["path"])
    imgs, labels, source, _ = evaluation_set(cfg, images or dataset)
    if limit:
        imgs = imgs[:limit]
        labels = None if labels is None else labels[:limit]
    result = verify_directory(directory, manifest, net, imgs, labels, source)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _print_verification(result)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def check(directory, as_json):
    """Integrity and GPU-delegate compatibility of every artifact in an export.

    Runs TF's GPU compatibility analyzer on each .tflite (the same check export records).
    """
    from basisnet_deploy.artifacts.manifest import check_files, load_manifest

    manifest = load_manifest(directory)
    check_files(directory, manifest)
    report = {}
    for role, entry in manifest["artifacts"].items():
        if entry["file"].endswith(".tflite"):
            from basisnet_deploy.converters.tflite import gpu_compatibility

            report[role] = gpu_compatibility(os.path.join(directory, entry["file"]))
        else:
            report[role] = {"compatible": None, "warnings": [],
                            "analyzer": "none for ONNX; GPU means the CUDA execution provider"}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for role, r in report.items():
        verdict = {True: "GPU compatible", False: "GPU INCOMPATIBLE", None: "n/a"}[r["compatible"]]
        click.echo(f"  {role:<24} sha256 ok   {verdict}")
        for w in r["warnings"]:
            click.echo(f"      {w}")


@cli.command("android-assets")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Assets folder to (re)write. [default: android_demo/app/src/main/assets/basisnet]")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def android_assets_cmd(directory, out, as_json):
    """Copy a TFLite export into the Android demo app's assets.

    Checks every artifact's sha256 against the manifest, writes the bases as one raw
    little-endian float32 file the app memory-maps (specialist_bases.bin, indexed in the copied
    manifest), and replaces OUT atomically. Rebuild the app afterwards (android_demo/README.md).
    """
    from basisnet_deploy.export.android import DEFAULT_OUT, android_assets

    report = android_assets(directory, out or DEFAULT_OUT)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"wrote {report['out']} from {report['source']}:")
    for name, size in report["files"].items():
        click.echo(f"  {name:<32} {size / 1e6:8.2f} MB")
    click.echo(f"  {'total':<32} {report['total_bytes'] / 1e6:8.2f} MB")


def _runtime_options(fn):
    options = [
        click.option("--delegate", type=click.Choice(["cpu", "xnnpack", "gpu", "nnapi"]),
                     default="xnnpack", show_default=True,
                     help="Processor for the specialist: cpu (builtin kernels), xnnpack, gpu "
                          "(LiteRT CompiledModel GPU / onnxruntime CUDA), nnapi (Android only). "
                          "The lightweight model runs on the CPU."),
        click.option("--runtime", type=click.Choice(["litert", "onnxruntime"]), default=None,
                     help="Default: litert for a TFLite export, onnxruntime for ONNX."),
        click.option("--delegate-path", type=click.Path(dir_okay=False), default=None,
                     help="An external TFLite delegate library (e.g. a GPU delegate .so)."),
        click.option("--allow-fallback", is_flag=True,
                     help="Run on the CPU when the delegate cannot load; the report says so."),
        click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True),
        click.option("--specialist-form", type=click.Choice(["coefficient", "presynth"]),
                     default="presynth", show_default=True),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _runtime_for(directory, runtime):
    if runtime:
        return runtime
    from basisnet_deploy.artifacts.manifest import load_manifest

    return "litert" if load_manifest(directory)["target"] == "tflite" else "onnxruntime"


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@_runtime_options
@click.option("--runner", type=click.Choice(["sequential", "pipelined", "both"]), default="both",
              show_default=True)
@click.option("--threshold", type=float, default=None,
              help="Early-exit confidence (default: the manifest's; none means never exit).")
@click.option("--frames", type=click.IntRange(1, 10**7), default=200, show_default=True)
@click.option("--warmup", type=click.IntRange(0, 10**6), default=20, show_default=True)
@click.option("--images", default=None, help="A folder of images (default: digits).")
@click.option("--dataset", type=click.Choice(["digits"]), default=None)
@click.option("--resynth-tolerance", type=float, default=0.0, show_default=True,
              help="Presynth: re-synthesize when coefficients drift by more than this (max abs).")
@click.option("--resynth-every", type=int, default=0, show_default=True,
              help="Presynth: re-synthesize at least every N frames (0: no limit).")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), default=None,
              help="Also write the full report to this JSON file.")
def bench(directory, delegate, runtime, delegate_path, allow_fallback, threads, specialist_form,
          runner, threshold, frames, warmup, images, dataset, resynth_tolerance, resynth_every,
          json_file):
    """Benchmark an export: per-stage init / first inference / p50-p90-p99, and the
    sequential and pipelined runners end to end (throughput, latency, early exits, MAdds, RSS).

    Every figure is measured in this run; what cannot be measured here is absent.
    """
    from basisnet_deploy.report.bench import bench as run_bench
    from basisnet_deploy.runtime.runner import ResynthesisPolicy

    report = run_bench(directory, delegate, _runtime_for(directory, runtime), runner,
                       specialist_form, threshold, frames, warmup, threads, images or dataset,
                       delegate_path, allow_fallback, ResynthesisPolicy(resynth_tolerance, resynth_every),
                       progress=lambda m: click.echo(f"  {m}", err=True))
    if json_file:
        with open(json_file, "w") as f:
            json.dump(report, f, indent=2)
    click.echo(f"{report['runtime']} / delegate {report['delegate']} / {report['threads']} thread(s) / "
               f"specialist {report['specialist_form']} / threshold {report['threshold']}")
    if report["fallback"]:
        click.echo(f"  FALLBACK: {report['fallback']}")
    click.echo(f"  processors: lightweight {report['processors']['lightweight']}, "
               f"specialist {report['processors']['specialist']}")
    click.echo(f"  {'stage':<16}{'init ms':>10}{'first ms':>10}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}")
    for name, st in report["stages"].items():
        lat = st["latency_ms"]
        click.echo(f"  {name:<16}{st.get('init_ms', float('nan')):>10.2f}"
                   f"{st.get('first_inference_ms', float('nan')):>10.2f}"
                   f"{lat['p50']:>10.3f}{lat['p90']:>10.3f}{lat['p99']:>10.3f}")
        if "with_session_recreation_ms" in st:
            click.echo(f"  {'  + re-create':<16}{'':>20}{st['with_session_recreation_ms']['p50']:>10.3f}")
    click.echo(f"  {'runner':<12}{'fps':>9}{'p50 ms':>9}{'p99 ms':>9}{'exit':>8}{'avg MAdds':>12}"
               f"{'resynth':>9}{'peak RSS':>10}")
    for name, r in report["runners"].items():
        click.echo(f"  {name:<12}{r['throughput_fps']:>9.1f}{r['latency_ms']['p50']:>9.3f}"
                   f"{r['latency_ms']['p99']:>9.3f}{r['early_exit_rate']:>8.1%}"
                   f"{r['avg_madds'] / 1e6:>11.2f}M{str(r['resyntheses']):>9}{r['peak_rss_mb']:>8.0f}MB")
    click.echo(f"  stage-bound throughput 1/max(t_light, t_specialist): {report['stage_bound_fps']:.1f} fps")
    if "pipelined_vs_sequential" in report:
        click.echo(f"  pipelined / sequential throughput: {report['pipelined_vs_sequential']:.2f}x")
    if "specialist_vs_baseline_p50" in report:
        click.echo(f"  specialist / plain baseline latency (p50): {report['specialist_vs_baseline_p50']:.2f}x")


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_runtime_options
@click.option("--threshold", type=float, default=None,
              help="Early-exit confidence (default: the manifest's; none means never exit).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image.")
def predict(directory, images, delegate, runtime, delegate_path, allow_fallback, threads,
            specialist_form, threshold, as_json):
    """Class, confidence and the stage that answered, for each IMAGE."""
    from basisnet_deploy.runtime.backends import make_factory
    from basisnet_deploy.data import load_image
    from basisnet_deploy.runtime.deployment import Deployment
    from basisnet_deploy.runtime.runner import TwoStageRunner

    dep = Deployment(directory)
    rt = _runtime_for(directory, runtime)
    factory = make_factory(rt, delegate, threads, delegate_path, allow_fallback,
                           probe=str(dep.path("lightweight")))
    light = make_factory(rt, "xnnpack" if delegate != "cpu" else "cpu", threads)
    frames = [dep.frame(load_image(p)) for p in images]
    run = TwoStageRunner(dep, light, factory, dep.threshold if threshold is None else threshold,
                         specialist_form, "sequential")
    for path, r in zip(images, run.run(frames)):
        if as_json:
            click.echo(json.dumps({"image": path, "class": r.name, "index": r.label,
                                   "confidence": round(r.confidence, 6), "stage": r.stage,
                                   "times_ms": {k: round(v, 3) for k, v in r.times_ms.items()}}))
        else:
            click.echo(f"{path}: {r.name} ({r.confidence:.1%}) answered by the {r.stage}")


@cli.command("calibrate-threshold")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--dataset", type=click.Choice(["digits"]), default=None,
              help="Held-out digits (the checkpoint's split when it was trained on digits).")
@click.option("--images", default=None, type=click.Path(file_okay=False),
              help="Labelled images DIR/<class>/<images>, classes as the manifest's labels.")
@click.option("--max-drop", type=float, default=None,
              help="Allowed top-1 drop in points against never exiting, e.g. 0.5.")
@click.option("--target-madds", type=float, default=None, help="Average MAdds budget per frame.")
@click.option("--specialist-form", type=click.Choice(["coefficient", "presynth"]), default="presynth",
              show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="PNG of accuracy vs average MAdds (default: DIR/early_exit_tradeoff.png).")
@click.option("--json", "as_json", is_flag=True)
def calibrate_threshold(directory, dataset, images, max_drop, target_madds, specialist_form,
                        plot_path, as_json):
    """Pick the early-exit threshold and write it into the manifest.

    Give --max-drop (top-1 points you allow to lose) or --target-madds (average cost per
    frame). Plots the accuracy/MAdds trade-off over all thresholds.
    """
    from basisnet_deploy.report import threshold as th
    from basisnet_deploy.runtime.backends import make_factory
    from basisnet_deploy.model.checkpoint import load_config
    from basisnet_deploy.runtime.deployment import Deployment
    from basisnet_deploy.data.datasets import evaluation_set

    if (max_drop is None) == (target_madds is None):
        raise UserError("give exactly one of --max-drop POINTS or --target-madds MADDS")
    dep = Deployment(directory)
    cfg = load_config(dep.manifest["checkpoint"]["path"])
    imgs, labels, source, _ = evaluation_set(cfg, images or dataset)
    if labels is None:
        raise UserError(f"{source}: threshold calibration needs labels: DIR/<class>/<images> "
                        "with the manifest's class names")
    factory = make_factory(_runtime_for(directory, None), "xnnpack")
    result = th.tradeoff(dep, factory, imgs, labels, specialist_form)
    chosen = th.choose(result, max_drop, target_madds)
    constraint = {"max_drop_points": max_drop} if max_drop is not None else {"target_madds": target_madds}
    th.write_threshold(directory, chosen, result, constraint)
    plot_path = plot_path or os.path.join(directory, "early_exit_tradeoff.png")
    th.plot(result, chosen, plot_path)
    if as_json:
        click.echo(json.dumps({"chosen": chosen, **{k: v for k, v in result.items() if k != "curve"},
                               "plot": plot_path}, indent=2))
        return
    cut = 1 - chosen["avg_madds"] / result["full_madds"]
    click.echo(f"{source}, {result['images']} images: never exiting gives "
               f"{result['no_exit_accuracy']:.2%} top-1 at {result['full_madds'] / 1e6:.2f}M MAdds")
    label = "never exit" if chosen["threshold"] is None else f"threshold {chosen['threshold']:.4f}"
    click.echo(f"{label}: {chosen['accuracy']:.2%} top-1 "
               f"({(chosen['accuracy'] - result['no_exit_accuracy']) * 100:+.2f} points), exit rate "
               f"{chosen['exit_rate']:.1%}, {chosen['avg_madds'] / 1e6:.2f}M average MAdds "
               f"({cut:.1%} cut)")
    click.echo(f"written to {directory}/manifest.json; trade-off plot: {plot_path}")


class _progress:
    """A tqdm bar on stderr fed by ``progress(step, total, logs)`` callbacks."""

    def __init__(self, desc):
        self.desc, self.bar = desc, None

    def __enter__(self):
        return self

    def __call__(self, step, total, logs):
        from tqdm import tqdm

        if self.bar is None:
            tty = sys.stderr.isatty()
            self.bar = tqdm(total=total, desc=self.desc, unit="step", file=sys.stderr,
                            mininterval=0.5 if tty else 15, dynamic_ncols=True)
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()}, refresh=False)
        self.bar.update(step - self.bar.n)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def main(argv=None):
    """Console entry point: user errors become one line on stderr and exit code 2."""
    # TensorFlow's C++ start-up notices (oneDNN, no CUDA driver on a CPU machine) bury the
    # output; a user can still set TF_CPP_MIN_LOG_LEVEL to see them.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        code = cli.main(args=argv, prog_name="basisnet-deploy", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (UserError, ConfigError) as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
