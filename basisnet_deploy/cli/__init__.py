"""``basisnet-deploy``: a thin click layer over the Python API.

Each command parses its flags, builds an options object, calls one API function and renders
the result with :mod:`basisnet_deploy.cli.render`: a table for people, ``--json`` for scripts
(stdout), ``--json-out FILE`` for a file, the same in every command.

Every user mistake is a :class:`~basisnet_deploy.common.errors.UserError`; :func:`main` prints it as
one ``Error:`` line and exits 2, never with a traceback (a run stopped by SIGINT/SIGTERM with
its state saved: 130/143; the agreement gate's refusal: 1). Any other failure is one ``Error:``
line and exit code 1; ``-v`` prints its traceback, cause included. TensorFlow is imported only by the
commands that need it, so ``cost`` and ``--help`` answer at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import itertools
import math
import os
import signal
import sys
import threading

import click

from basisnet_deploy.cli import render
from basisnet_deploy.common.errors import ConfigError, UserError
from basisnet_deploy.common.files import Terminated, check_output_file
from basisnet_deploy.data import Preprocessing
from basisnet_deploy.model.config import BACKBONES, PRESETS, ArchConfig, TrainSettings
from basisnet_deploy.quantization.settings import WeightTuning
from basisnet_deploy.targets import registry
from basisnet_deploy.targets.kinds import CoefficientInt8
from basisnet_deploy.targets.recipes import AUTO_ORDER, DEFAULT_RECIPE, RECIPE_CHOICES, RECIPES
from basisnet_deploy.training.distribute import STRATEGY_NAMES as TRAIN_STRATEGIES

PLAIN_ARCHS = ("mv3-large", "mv3-small", "mv2")
CONVERT_MODULES = ("tensorflow", "keras", "tf2onnx")  # the [convert] extra


_TRAIN_DEFAULTS = TrainSettings()


def _export_quantizations() -> list[str]:
    """What a whole export may ask for, over every registered target."""
    found = [q.value for t in registry.names() for q in registry.get(t).export_quantizations]
    return list(dict.fromkeys(found))


def _input_types() -> list[str]:
    return list(dict.fromkeys(i for t in registry.names() for i in registry.get(t).input_types))


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
        click.option("--width", type=Finite(), default=None, help="Specialist width multiplier."),
        click.option("--resolution", type=int, default=None, help="Specialist input size in pixels."),
        click.option("--light-width", type=Finite(), default=None, help="Lightweight-model width multiplier."),
        click.option("--light-resolution", type=int, default=None,
                     help="Lightweight-model input size in pixels."),
        click.option("--classes", type=int, default=None, help="Number of classes."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _arch_from_flags(flags: dict, default_preset: str = "mv3") -> ArchConfig:
    """The preset named by ``--preset`` (or the default), with every given flag applied."""
    base = PRESETS[flags["preset"] or default_preset]
    if flags["backbone"] and flags["backbone"] != base.backbone and not flags["preset"]:
        base = PRESETS[flags["backbone"]]
    names = {"classes": "num_classes"}
    overrides = {names.get(k, k): v for k, v in flags.items() if k != "preset" and v is not None}
    flag = {v: k for k, v in names.items()}
    return dataclasses.replace(base, **overrides).validate(
        name=lambda key: f"--{flag.get(key, key).replace('_', '-')}")


class Finite(click.FloatRange):
    """click.FloatRange that also refuses NaN and infinity (NaN passes every range check)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.min is None and self.max is None:
            self.name = "float"  # the metavar: FLOAT, not FLOAT RANGE

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number

    def _describe_range(self) -> str:
        return "finite" if self.min is None and self.max is None else super()._describe_range()


class Threshold(Finite):
    """An early-exit confidence in [0, 1], or 'none': never exit (a confidence of 1.0 does
    occur in float32, so 1 is not "never")."""

    def __init__(self):
        super().__init__(0, 1)

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip().lower() == "none":
            from basisnet_deploy.runtime.runner import NEVER_EXIT

            return NEVER_EXIT
        return super().convert(value, param, ctx)

    def get_metavar(self, *args, **kwargs):
        return "[0<=x<=1|none]"

    def _describe_range(self) -> str:
        return "0<=x<=1 or none"


def output_options(fn):
    """``--json`` and ``--json-out``, the same in every command; the JSON file is checked
    before the command runs (:func:`~basisnet_deploy.common.files.check_output_file`): never
    inside a folder the command reads or writes, or any the tool wrote, nor an input file."""
    @functools.wraps(fn)
    def checked(*args, **kwargs):
        if kwargs.get("json_out"):
            folders = [kwargs[k] for k in ("directory", "checkpoint", "checkpoint_dir", "out") if kwargs.get(k)]
            files = [f for f in (kwargs.get("bench_json"), *(kwargs.get("init_from") or ())) if f]
            check_output_file(kwargs["json_out"], "--json-out", "JSON", folders, files)
        return fn(*args, **kwargs)

    checked = click.option("--json-out", "json_out", type=click.Path(dir_okay=False), default=None,
                           help="Also write the result as JSON to this file (outside the "
                                "folders the tool reads and writes; an existing file is "
                                "replaced only if it holds JSON).")(checked)
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the result as one JSON document on stdout instead of a table.")(checked)


def _verbose(ctx, param, value):
    from basisnet_deploy.common.quiet import set_verbosity

    set_verbosity(bool(value))
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="basisnet-deploy")
@click.option("-v", "--verbose", is_flag=True, is_eager=True, expose_value=False, callback=_verbose,
              help="Show TensorFlow's and the converters' own logs (hidden by default), and "
                   "the traceback of a failure that is not a user mistake.")
def cli():
    """Train, cost, export, verify, benchmark and run BasisNet two-stage classifiers.

    \b
    Data flows one way:
      checkpoint -> model -> artifacts + manifest -> runtime -> runner -> report
    \b
    Start with:
      basisnet-deploy train --dataset digits --out ckpt/     # the small demo model
      basisnet-deploy export ckpt/ --calibration digits --int8-recipe fidelity --out ex/
                                                             # TFLite int8 + manifest, verified
      basisnet-deploy bench ex/                              # per-stage and runner figures
      basisnet-deploy predict ex/ photo.jpg                  # one answer per image
    Every command takes --json (stdout) and --json-out FILE; user mistakes are one
    'Error:' line and exit code 2, other failures one line and exit code 1 (-v: traceback);
    a train or tuning stopped by SIGINT/SIGTERM saves its state and exits 130/143.
    """


@cli.command()
@click.argument("checkpoint", required=False, type=click.Path(file_okay=False))
@arch_options
@click.option("--plain", type=click.Choice(PLAIN_ARCHS), default=None,
              help="Cost a plain MobileNet instead of a BasisNet (uses --width/--resolution).")
@output_options
def cost(checkpoint, plain, as_json, json_out, **flags):
    """Multiply-adds and parameters of a BasisNet, per stage, or of a plain MobileNet.

    Give a CHECKPOINT directory, or architecture flags (defaults: the paper's BasisNet-MV3,
    1000 classes). MAdds count conv and dense multiply-adds plus basis synthesis (K x P per
    image); params count weights plus one folded-BN bias per channel. With --json the
    top-level 'madds' and 'params' are the totals for what was asked.
    """
    from basisnet_deploy.model import cost as costs

    if plain:
        ignored = [f"--{k.replace('_', '-')}" for k, v in flags.items()
                   if v is not None and k not in ("width", "resolution", "classes")]
        if checkpoint or ignored:
            raise UserError(f"cost --plain costs a plain MobileNet from --width, --resolution and "
                            f"--classes; {'a CHECKPOINT' if checkpoint else ', '.join(ignored)} "
                            "does not apply to it: drop it, or leave out --plain")
        result = costs.plain_cost(plain, flags["width"] or 1.0, flags["resolution"] or 224,
                                  flags["classes"] or 1000)
    else:
        if checkpoint and any(v is not None for v in flags.values()):
            raise UserError("cost: give either a CHECKPOINT or architecture flags, not both")
        if checkpoint:
            from basisnet_deploy.model.checkpoint import load_config

            arch = load_config(checkpoint).architecture
        else:
            arch = _arch_from_flags(flags)
        result = {**costs.basisnet_cost(arch), "architecture": dataclasses.asdict(arch)}
    render.emit(result, as_json, json_out, render.cost_text)


@cli.command()
@click.option("--dataset", default="digits", show_default=True,
              help="'digits' (ships with scikit-learn) or an image folder DIR/<class>/<images>.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Checkpoint directory to write (config.json + weights).")
@arch_options
@click.option("--epochs", type=click.IntRange(1, 100000), default=_TRAIN_DEFAULTS.epochs, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 65536), default=_TRAIN_DEFAULTS.batch_size, show_default=True)
@click.option("--learning-rate", type=Finite(0, 10, min_open=True), default=_TRAIN_DEFAULTS.learning_rate,
              show_default=True, help="Peak RMSProp learning rate after the linear warm-up.")
@click.option("--held-out", type=Finite(0, 1, min_open=True, max_open=True), default=_TRAIN_DEFAULTS.held_out, show_default=True,
              help="Fraction of each class held out for evaluation.")
@click.option("--resize", type=click.Choice(["squash", "center_crop"]), default=None,
              help="Resize rule stored in the checkpoint (default: squash for digits, "
                   "center_crop for image folders).")
@click.option("--seed", type=int, default=_TRAIN_DEFAULTS.seed, show_default=True,
              help="Seeds data split, shuffling, init and dropout: the same seed gives the same "
                   "held-out split and data order; with the default strategy on CPU the weights "
                   "are bit-identical across processes on one machine (another CPU model may "
                   "round differently: docs/training.md).")
@click.option("--strategy", type=click.Choice(TRAIN_STRATEGIES), default="default",
              show_default=True, help="tf.distribute strategy the training step runs under; "
                                      "multi-worker reads TF_CONFIG (docs/training.md).")
@click.option("--augment/--no-augment", default=None,
              help="Random resized crop + flip (default: on for image folders, off for digits).")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Keep shrunk decoded images here and reuse them in later epochs and runs.")
@click.option("--resume", is_flag=True,
              help="Require saved state from an interrupted run (the same command resumes anyway).")
@click.option("--init-from", "init_from", multiple=True, metavar="FILE",
              type=click.Path(dir_okay=False),
              help="Start from a keras.applications MobileNetV3 weights file (the .h5 it "
                   "downloads, or a Keras 3 .weights.h5): a Large file loads into the "
                   "specialist (each non-shared basis a perturbed copy of its kernel), a Small "
                   "one into the lightweight model; repeat for both. The classifier loads only "
                   "if the class count matches. Ignored when the run resumes.")
@output_options
def train(dataset, out, epochs, batch_size, learning_rate, held_out, resize, seed, strategy,
          augment, cache_dir, resume, init_from, as_json, json_out, **flags):
    """Train both stages jointly and write a checkpoint directory.

    The default is the embedded demo: digits with the 'demo' preset. Prints held-out top-1
    of the lightweight model alone and of the specialist it drives.
    """
    from basisnet_deploy.training.trainer import RunOptions, train_checkpoint

    if epochs < 1 or batch_size < 1:
        raise UserError("--epochs and --batch-size must be at least 1")
    if not 0 < held_out < 1:
        raise UserError(f"--held-out must be between 0 and 1, got {held_out}")
    arch = _arch_from_flags({**flags, "classes": flags["classes"] or 10},
                            default_preset="demo" if dataset == "digits" else "mv3")
    pre = Preprocessing(resize=resize or ("squash" if dataset == "digits" else "center_crop"))
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                             held_out=held_out, seed=seed, strategy=strategy)
    run = RunOptions(augment=augment, cache_dir=cache_dir, require_resume=resume,
                     init_from=tuple(init_from), classes=flags["classes"])
    with _progress("train") as progress:
        result = train_checkpoint(dataset, out, (arch, pre), settings, progress, run)
    if result.skipped:
        from collections import Counter

        from basisnet_deploy.data.datasets import describe_skipped

        click.echo(describe_skipped(Counter(result.skipped), result.skipped_files or []), err=True)
    render.emit(result, as_json, json_out, render.train_text)
    if strategy == "multi-worker":  # TF's collective/gRPC threads can block interpreter exit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@cli.command()
@click.argument("checkpoint", type=click.Path(file_okay=False))
@click.option("--dataset", default=None,
              help="'digits' or an image folder. Default: the dataset the checkpoint was "
                   "trained on, with its held-out split re-created from the stored seed.")
@click.option("--limit", type=click.IntRange(1, 10**6), default=None,
              help="At most this many images, a seeded sample spread over the classes.")
@output_options
def evaluate(checkpoint, dataset, limit, as_json, json_out):
    """Top-1 of the lightweight model alone and of the specialist, from a checkpoint.

    On the training dataset it scores the held-out split only (same seed, same split).
    Images are decoded as they are reached, so memory stays flat however many there are;
    unreadable files are skipped and counted, and the JSON has top-1 per class.
    """
    from basisnet_deploy.training.trainer import evaluate_checkpoint

    with _progress("evaluate", unit="image") as progress:
        result = evaluate_checkpoint(checkpoint, dataset, limit, progress)
    render.emit(result, as_json, json_out, render.evaluate_text)


@cli.command()
@click.argument("checkpoint", type=click.Path(file_okay=False))
@click.option("--target", type=click.Choice(registry.names()), default=registry.DEFAULT, show_default=True,
              help="; ".join(f"{t}: {registry.get(t).title} ({registry.get(t).runtime.value} runs it)"
                             for t in registry.names()) + ".")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Export directory (default: <checkpoint>/../export-<target>). An existing "
                   "export there is replaced; any other existing directory is refused.")
@click.option("--quantize", type=click.Choice(_export_quantizations()), default=None,
              help="Default: int8 when --calibration is given, else float32. float16 is the "
                   "GPU export (TFLite).")
@click.option("--calibration", default=None, metavar="digits|IMAGE_DIR",
              help="Real images for int8 calibration: 'digits' (its training split) or a "
                   "folder of images; unreadable files are skipped and counted.")
@click.option("--calibration-size", type=click.IntRange(1, 100000), default=200, show_default=True)
@click.option("--specialist", type=click.Choice(["coefficient", "presynth", "all"]), default="all",
              show_default=True, help="Which specialist forms to export.")
@click.option("--input-type", type=click.Choice(_input_types()), default="float32",
              show_default=True, help="Input tensor type of full-int8 TFLite models.")
@click.option("--verify-images", type=click.IntRange(1, 100000), default=None,
              help="Held-out images the export's own verification uses (default: 100; with "
                   "--int8-recipe auto, enough to resolve --min-agreement, where the held-out "
                   "set has them).")
@click.option("--images", default=None, metavar="digits|DIR",
              help="Held-out images for the export's verification (default: the checkpoint's "
                   "held-out digits split, when it was trained on digits).")
@click.option("--coefficient-int8", type=click.Choice([c.value for c in CoefficientInt8]),
              default=CoefficientInt8.DYNAMIC.value,
              show_default=True,
              help="TFLite int8 scheme of the coefficient-input specialist: dynamic range (float "
                   "activations) or fakequant (full int8, synthesized kernels symmetric per-tensor); "
                   "applies where --int8-recipe leaves it static int8 (full).")
@click.option("--baseline", is_flag=True,
              help="Also export a plain MobileNet of the specialist's shape, so bench reports "
                   "the specialist's latency as a ratio to it.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Calibration image selection, and the batches and held-back quarter of "
                   "--tuning-steps.")
@click.option("--int8-recipe", type=click.Choice(list(RECIPE_CHOICES)), default=DEFAULT_RECIPE,
              show_default=True,
              help="What --quantize int8 makes of each artifact: 'auto' tries "
                   + ", then ".join(r.name for r in AUTO_ORDER)
                   + " and keeps the first that passes --min-agreement, verified on enough "
                   "held-out images to tell the threshold from half a point above it; "
                   + "; ".join(f"'{r.name}': {r.summary}" for r in RECIPES.values())
                   + ". docs/export.md 'Int8 recipes' has the measured trade-off.")
@click.option("--tuning-steps", type=click.IntRange(0, 1_000_000), default=None,
              help="--int8-recipe " + " or ".join(r.name for r in RECIPES.values() if r.tuned)
                   + " only: steps that tune the lightweight "
                   "model's and the template's int8 weights on random views of three quarters "
                   "of the calibration images so that they give the float model's outputs; the "
                   "step kept is the best on the held-back quarter, nearest rounding included "
                   "(demo preset on 2 CPU cores, 200 calibration images: 63-104 s for the "
                   "LM's 2,000 steps and 192-275 s for the template's, "
                   "benchmarks/results/full_16x8_photos.md; more per step on short runs). "
                   "0: plain nearest rounding. Stopped while tuning (Ctrl-C, SIGTERM), the "
                   "same command goes on from the tuning's saved state (.<out>.tuning/ beside "
                   "--out, removed once the export lands or is refused). "
                   f"[default: {WeightTuning.steps}]")
@click.option("--min-agreement", type=Finite(0, 100), default=99.0, show_default=True,
              help="Percent top-1 agreement with the float model on held-out images that every "
                   "artifact must reach, isolated and end to end; below it the export fails "
                   "(exit 1) and nothing is written.")
@click.option("--allow-low-agreement", is_flag=True,
              help="Write an export below --min-agreement anyway; the manifest records it and "
                   "check/bench warn.")
@output_options
def export(checkpoint, out, as_json, json_out, **options):
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
    from basisnet_deploy.export.pipeline import ExportOptions
    from basisnet_deploy.export.pipeline import export as run_export

    export_options = ExportOptions(**options)
    _refuse_int8_only_options(export_options, ("int8_recipe", "input_type", "coefficient_int8"))
    out = out or os.path.join(os.path.dirname(os.path.abspath(checkpoint)), f"export-{options['target']}")
    steps = itertools.count(1)
    manifest = run_export(checkpoint, out, export_options,
                          progress=lambda msg: click.echo(f"[{next(steps)}] {msg}", err=True))
    click.echo(f"exported to {out}", err=True)
    doc = manifest.to_json()  # the manifest as written: the JSON views show it
    if json_out:
        render.emit(doc, False, json_out, lambda _: [])
    render.emit(doc if as_json else manifest, as_json, None, render.export_text)


def _refuse_int8_only_options(options, names) -> None:
    """Options of int8 exports, given on the command line of a float one, refused: they would
    be dropped without a word (the manifest then shows float32 input after --input-type uint8)."""
    from basisnet_deploy.targets.kinds import Quantization

    quantization = options.validated().quantization
    if quantization is Quantization.INT8:
        return
    ctx = click.get_current_context()
    defaults = {param.name: param.default for param in ctx.command.params}
    given = [n for n in names if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE
             and getattr(options, n) != defaults[n]]  # a default spelled out changes nothing
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise UserError(f"{flag} {getattr(options, given[0])}: applies to int8 exports, and this one "
                        f"is {quantization.value} ({'--quantize ' + quantization.value if options.quantize else 'no --calibration'}); "
                        "drop it, or pass --calibration digits|IMAGE_DIR for an int8 export")


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--dataset", "dataset", default=None, type=click.Choice(["digits"]),
              help="Verify on held-out digits (the checkpoint's split when it was trained on "
                   "digits; default: the checkpoint's held-out split).")
@click.option("--images", default=None, type=click.Path(file_okay=False),
              help="Held-out images: DIR/<class>/<images> scores accuracy too.")
@click.option("--limit", type=click.IntRange(1, 10**6), default=None,
              help="At most this many images, a seeded sample spread over the classes (the "
                   "same images export's verification of that many uses).")
@click.option("--delegate", type=click.Choice(["xnnpack", "cpu", "gpu"]), default="xnnpack",
              show_default=True,
              help="Where the specialists run (the lightweight model runs on the CPU): gpu checks "
                   "what the GPU computes against the float model.")
@click.option("--allow-fallback", is_flag=True,
              help="With --delegate gpu: run on the CPU when the GPU cannot; the result says so.")
@click.option("--checkpoint", "checkpoint_dir", default=None, type=click.Path(file_okay=False),
              help="The checkpoint the export was made from (default: the path its manifest "
                   "records); its config.json must be the one the export recorded.")
@output_options
def verify(directory, dataset, images, limit, delegate, allow_fallback, checkpoint_dir, as_json, json_out):
    """Check every artifact of an export against the float TF model from its checkpoint.

    Reports top-1 agreement, accuracy, logit error and coefficient error per artifact, and
    images per class. Images are decoded as they are reached (8 to 32 at a time for the
    float model, fewer for larger inputs), so memory stays flat however many there are;
    unreadable files are skipped and counted.
    """
    from basisnet_deploy.export.verify import verify_export

    with _progress("verify", unit="image") as progress:
        result = verify_export(directory, _image_source(images, dataset), limit, progress, delegate, allow_fallback,
                               checkpoint_dir)
    render.emit(result, as_json, json_out, render.verify_text)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@output_options
def check(directory, as_json, json_out):
    """Integrity of every artifact in an export, and whether LiteRT's GPU runs each.

    Checks every artifact's size and sha256 against the manifest. Then, where LiteRT's GPU
    accelerator finds a device, each .tflite is compiled for the GPU, run on probe inputs and
    compared with the CPU: "runs", "refused" (naming the op or kernel) or "miscomputes"
    (a shader failed, or the outputs differ). Without a device the column is a static guess
    from the artifact's kind, and says so, beside the verdict the export measured where it
    ran on a device. ONNX exports get onnxruntime's WebGPU EP verdict
    where it finds a device (the [gpu] extra), else none, with the reason.
    """
    from basisnet_deploy.export.check import check_export

    render.emit(check_export(directory), as_json, json_out, render.check_text)


@cli.command("android-assets")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Assets folder to (re)write. [default: android_demo/app/src/main/assets/basisnet]")
@output_options
def android_assets_cmd(directory, out, as_json, json_out):
    """Copy a TFLite export into the Android demo app's assets.

    Checks every artifact's sha256 against the manifest, writes the bases as one raw
    little-endian float32 file the app memory-maps (specialist_bases.bin, indexed in the copied
    manifest), and replaces OUT atomically. Rebuild the app afterwards (android_demo/README.md).
    """
    from basisnet_deploy.export.android import DEFAULT_OUT, android_assets

    render.emit(android_assets(directory, out or DEFAULT_OUT), as_json, json_out, render.android_text)


def _runtime_options(fn):
    options = [
        click.option("--delegate", type=click.Choice(["cpu", "xnnpack", "gpu", "nnapi"]),
                     default="xnnpack", show_default=True,
                     help="Processor for the specialist: cpu (builtin kernels), xnnpack, gpu "
                          "(LiteRT's GPU accelerator, or for ONNX exports onnxruntime's CUDA EP, "
                          "else its WebGPU EP with the [gpu] extra; the artifact is compiled, run "
                          "and compared with the CPU first), nnapi (Android only). The "
                          "lightweight model runs on the CPU."),
        click.option("--runtime", type=click.Choice(["litert", "onnxruntime"]), default=None,
                     help="Default: litert for a TFLite export, onnxruntime for ONNX."),
        click.option("--delegate-path", type=click.Path(dir_okay=False), default=None,
                     help="An external TFLite delegate library (e.g. a GPU delegate .so)."),
        click.option("--allow-fallback", is_flag=True,
                     help="Run on the CPU when the delegate cannot load; the report says so."),
        click.option("--threads", type=click.IntRange(1, 256), default=None,
                     help="Threads of the specialist (default: the cores left after the LM and "
                          "synthesis, at least 1). The LM and synthesis run one thread each."),
        click.option("--specialist-form", type=click.Choice(["coefficient", "presynth"]),
                     default=None,
                     help="coefficient: synthesis inside the graph; presynth: a template "
                          "re-synthesized on the host. [default: coefficient with --delegate "
                          "gpu (one compiled model for every frame), else presynth]"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _image_source(images: str | None, dataset: str | None) -> str | None:
    """--images DIR or --dataset NAME, refused when both are given (one would be ignored)."""
    if images and dataset:
        raise UserError(f"give --images {images} or --dataset {dataset}, not both")
    return images or dataset


def _runtime(flags: dict):
    from basisnet_deploy.runtime.predict import RuntimeOptions

    return RuntimeOptions(delegate=flags["delegate"], runtime=flags["runtime"],
                          delegate_path=flags["delegate_path"], allow_fallback=flags["allow_fallback"],
                          threads=flags["threads"], form=flags["specialist_form"])


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@_runtime_options
@click.option("--runner", type=click.Choice(["sequential", "pipelined", "both"]), default="both",
              show_default=True)
@click.option("--threshold", type=Threshold(), default=None,
              help="Early-exit confidence in [0, 1], or 'none': never exit, the specialist "
                   "answers every frame (default: the manifest's threshold).")
@click.option("--frames", type=click.IntRange(1, 10**7), default=200, show_default=True)
@click.option("--warmup", type=click.IntRange(0, 10**6), default=20, show_default=True)
@click.option("--images", default=None, help="A folder of images (default: digits).")
@click.option("--dataset", type=click.Choice(["digits"]), default=None)
@click.option("--resynth-tolerance", type=Finite(0), default=0.0, show_default=True,
              help="Presynth: re-synthesize when coefficients drift by more than this (max abs).")
@click.option("--resynth-every", type=click.IntRange(0, 10**9), default=0, show_default=True,
              help="Presynth: re-synthesize at least every N frames (0: no limit; 1: every "
                   "frame, the paper's exact per-image BasisNet).")
@click.option("--input-fps", type=Finite(0.1, 10000), default=None,
              help="Offer frames at this rate, as a camera would (default: as fast as the "
                   "runner accepts them, full load).")
@click.option("--bases", type=click.Choice(["float32", "int8"]), default="float32", show_default=True,
              help="Presynth: synthesize from the float32 bases (the reference's exact bytes) or "
                   "the int8 compact bases (a quarter of the bytes to read; error in docs/runtime.md).")
@click.option("--drop", type=click.Choice(["block", "keep-latest"]), default="block",
              show_default=True,
              help="When the pipeline is full: block the source, or drop the oldest waiting "
                   "frame (a live camera); dropped frames are counted.")
@output_options
def bench(directory, runner, threshold, frames, warmup, images, dataset, resynth_tolerance,
          resynth_every, input_fps, drop, bases, as_json, json_out, **flags):
    """Benchmark an export: per-stage init / first inference / p50-p90-p99, and the
    sequential and pipelined runners end to end (throughput, latency, early exits, MAdds, RSS).

    Every figure is measured in this run; what cannot be measured here is absent.
    """
    from basisnet_deploy.report.bench import BenchOptions
    from basisnet_deploy.report.bench import bench as run_bench
    from basisnet_deploy.runtime.deployment import Deployment
    from basisnet_deploy.runtime.runner import ResynthesisPolicy

    rt = _runtime(flags)
    dep = Deployment(directory)
    presynth_only = [name for name, value, default in (("--bases", bases, "float32"),
                                                       ("--resynth-every", resynth_every, 0),
                                                       ("--resynth-tolerance", resynth_tolerance, 0.0))
                     if value != default]
    form = rt.form_for(dep)
    if presynth_only and form != "presynth":
        raise UserError(f"{', '.join(presynth_only)}: for the presynth form only (re-synthesized "
                        f"on the host), and this run uses the {form} form; add "
                        "--specialist-form presynth or drop the option")
    options = BenchOptions(
        delegate=rt.delegate, runtime=rt.runtime_for(dep), runner=runner,
        form=rt.form, threshold=threshold, frames=frames, warmup=warmup, threads=rt.threads,
        images=_image_source(images, dataset), delegate_path=rt.delegate_path, allow_fallback=rt.allow_fallback,
        policy=ResynthesisPolicy(resynth_tolerance, resynth_every), input_fps=input_fps, drop=drop,
        bases=bases)
    report = run_bench(directory, options, progress=lambda m: click.echo(f"  {m}", err=True),
                       deployment=dep)
    render.emit(report, as_json, json_out, render.bench_text)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_runtime_options
@click.option("--threshold", type=Threshold(), default=None,
              help="Early-exit confidence in [0, 1], or 'none': never exit, the specialist "
                   "answers every frame (default: the manifest's threshold).")
@output_options
def predict(directory, images, threshold, as_json, json_out, **flags):
    """Class, confidence and the stage that answered, for each IMAGE."""
    from basisnet_deploy.runtime.predict import predict as run_predict

    render.emit(run_predict(directory, list(images), _runtime(flags), threshold), as_json, json_out,
                render.predict_text)


@cli.command("calibrate-threshold")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--dataset", type=click.Choice(["digits"]), default=None,
              help="Held-out digits (the checkpoint's split when it was trained on digits).")
@click.option("--images", default=None, type=click.Path(file_okay=False),
              help="Labelled images DIR/<class>/<images>, classes as the manifest's labels.")
@click.option("--max-drop", type=Finite(0, 100), default=None,
              help="Allowed top-1 drop in points against never exiting, e.g. 0.5.")
@click.option("--target-madds", type=Finite(0, min_open=True), default=None, help="Average MAdds budget per frame.")
@click.option("--specialist-form", type=click.Choice(["coefficient", "presynth"]), default="presynth",
              show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="PNG of accuracy vs average MAdds (default: DIR/early_exit_tradeoff.png).")
@click.option("--limit", type=click.IntRange(1, 10**6), default=None,
              help="At most this many images, a seeded sample spread over the classes.")
@click.option("--checkpoint", "checkpoint_dir", default=None, type=click.Path(file_okay=False),
              help="The checkpoint the export was made from (default: the path its manifest "
                   "records); its config.json must be the one the export recorded.")
@output_options
def calibrate_threshold(directory, dataset, images, max_drop, target_madds, specialist_form,
                        plot_path, limit, checkpoint_dir, as_json, json_out):
    """Pick the early-exit threshold and write it into the manifest.

    Give --max-drop (top-1 points you allow to lose) or --target-madds (average cost per
    frame). Plots the accuracy/MAdds trade-off over all thresholds.
    """
    from basisnet_deploy.artifacts.manifest import load_manifest
    from basisnet_deploy.data.datasets import evaluation_set
    from basisnet_deploy.export.verify import export_checkpoint
    from basisnet_deploy.model.checkpoint import load_config
    from basisnet_deploy.report.threshold import PLOT_FILE, calibrate

    if (max_drop is None) == (target_madds is None):
        raise UserError("give exactly one of --max-drop POINTS or --target-madds MADDS")
    cfg = load_config(export_checkpoint(directory, load_manifest(directory), checkpoint_dir))
    plot = plot_path or os.path.join(directory, PLOT_FILE)
    if json_out and os.path.abspath(json_out) == os.path.abspath(plot):
        raise UserError(f"--json-out {json_out}: the same file as the plot; choose another path")
    check_output_file(plot, "--plot", "PNG")
    held = evaluation_set(cfg, _image_source(images, dataset)).sample(limit)
    with _progress("calibrate-threshold", unit="image") as progress:
        result = calibrate(directory, held, max_drop, target_madds, specialist_form, plot_path,
                           progress)
    render.emit(result, as_json, json_out, render.threshold_text)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--images", required=True, metavar="digits|DIR",
              help="Labelled images: 'digits' (its held-out fifth, seed 0) or DIR/<class>/<images> "
                   "with class folders named as the manifest's labels.")
@click.option("--bench", "bench_json", type=click.Path(dir_okay=False), default=None,
              help="A 'bench --json-out' file of this export (checked by the manifest's sha256): "
                   "adds per-stage latencies.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Report folder to write (index.html, PNGs, report.json). An existing folder "
                   "is replaced only if it is a previous report.")
@click.option("--layer", default=None, metavar="BLOCK",
              help="Non-shared block for basis specialization, e.g. L15 (default: the last).")
@click.option("--classes", default=None, metavar="A,B,...",
              help="Classes for the similar-classes heat maps (default: the ones the LM confuses most).")
@click.option("--limit", type=click.IntRange(1, 10**6), default=None,
              help="At most this many images (a seeded sample).")
@output_options
def report(directory, images, bench_json, out, layer, classes, limit, as_json, json_out):
    """One self-contained HTML page: what the bases learned and what the deployment costs.

    Runs the export's lightweight model and every exported specialist form on the images
    (no TensorFlow) and writes OUT/index.html with its PNGs and OUT/report.json, which holds
    every number the page shows.
    """
    from basisnet_deploy.report.page import ReportOptions, build_report

    names = tuple(c.strip() for c in classes.split(",") if c.strip()) if classes else ()
    if len(set(names)) != len(names):
        raise UserError(f"--classes {classes}: names a class twice; give distinct classes")
    options = ReportOptions(images=images, bench=bench_json, layer=layer, classes=names, limit=limit)
    with _progress("report", unit="image") as progress:
        result = build_report(directory, out, options, progress)
    render.emit(result, as_json, json_out, render.report_text)


class _progress:
    """A tqdm bar on stderr fed by ``progress(step, total, logs)`` callbacks."""

    def __init__(self, desc, unit="step"):
        self.desc, self.unit, self.bar = desc, unit, None
        self.started = None

    def __enter__(self):
        import time

        self.started = time.time()  # tqdm's clock
        return self

    def __call__(self, step, total, logs):
        from tqdm import tqdm

        if self.bar is None:
            tty = sys.stderr.isatty()
            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=sys.stderr,
                            mininterval=0.5 if tty else 15, dynamic_ncols=True)
            if step > 0 and self.started:  # no call at the start of the work: timed from the
                # bar's creation, a first batch already done would show thousands of images/s
                self.bar.start_t = self.bar.last_print_t = self.started
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()}, refresh=False)
        self.bar.update(step - self.bar.n)

    def note(self, line):
        """A one-off message (e.g. what --init-from loaded) above the bar, on stderr."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)

    def epoch_done(self, summary):
        line = (f"epoch {summary['epoch']}: {summary['seconds']:.1f} s, "
                f"{summary['images_per_s']:.1f} images/s, loss {summary['loss']:.3f}, "
                f"ETA {summary['eta_s']:.0f} s")
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def main(argv=None):
    """Console entry point: user errors become one line on stderr and exit code 2 (or their
    own: a stop by a signal 130/143, the gate's refusal 1), other failures one line and exit
    code 1 (with the traceback under ``-v``)."""
    # TensorFlow's C++ start-up notices (oneDNN, no CUDA driver on a CPU machine) bury the
    # output; a user can still set TF_CPP_MIN_LOG_LEVEL to see them.
    from basisnet_deploy.common.quiet import filter_native_logs, set_verbosity, silence_native_exit

    args = sys.argv[1:] if argv is None else list(argv)
    set_verbosity(bool(args) and args[0] in ("-v", "--verbose"))  # -v: every log shown
    code = 0
    try:
        with filter_native_logs():
            try:
                code = _run(args)
            finally:
                gc.collect()  # LiteRT environments log as they are destroyed: while still filtered
    except SystemExit as e:  # _run's exit for an error, after its one line
        code = e.code
    if argv is None:  # the console command, not a caller in the same process
        silence_native_exit()
    sys.exit(code if isinstance(code, int) else 0)


def _run(argv):
    """The command's exit code; user errors printed as one line."""
    with _noting_interrupts() as interrupted:
        try:
            return cli.main(args=argv, prog_name="basisnet-deploy", standalone_mode=False)
        except click.exceptions.Abort as e:  # click's form of KeyboardInterrupt, and of EOFError
            if isinstance(e.__context__, EOFError):  # a file that ended early: not the user's stop
                _internal_failure(e.__context__)
            _stopped_by_user()
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except (UserError, ConfigError) as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(getattr(e, "exit_code", 2))
        except ImportError as e:  # a missing optional dependency, by the module's name
            if (e.name or "").split(".")[0] not in CONVERT_MODULES:
                _internal_failure(e)
            click.echo(f"Error: this command needs {e.name}, which this install lacks: "
                       "pip install 'basisnet-deploy[convert]'", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            _stopped_by_user()
        except Terminated:  # SIGTERM mid-write or a second one mid-run: cleaned up, exit 143
            click.echo("Terminated.", err=True)
            raise
        except Exception as e:  # noqa: BLE001 - not the user's input: one line, exit 1
            if interrupted.is_set():  # Ctrl-C inside native code (a converter) came out as
                _stopped_by_user()  # another exception: still the user's stop
            _internal_failure(e)


def _stopped_by_user():
    """A Ctrl-C: one line, and exit 130 as a shell reports a process SIGINT ended."""
    click.echo("Interrupted.", err=True)
    sys.exit(130)


@contextlib.contextmanager
def _noting_interrupts():
    """While active, Python's SIGINT handler (KeyboardInterrupt) notes each signal in the
    yielded event first: native code that catches the KeyboardInterrupt may raise something
    else instead. A SIGINT left ignored (nohup) or handled by a caller stays as it is."""
    seen = threading.Event()
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield seen
        return

    def handler(signum, frame):
        seen.set()
        signal.default_int_handler(signum, frame)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def _internal_failure(e: BaseException):
    """Not the user's mistake: one ``Error:`` line and exit code 1; under ``-v`` the traceback
    (with the exception's cause) first."""
    import traceback

    from basisnet_deploy.common.errors import InternalError
    from basisnet_deploy.common.quiet import verbose

    if verbose():
        traceback.print_exception(e, file=sys.stderr)
    lines = str(e).strip().splitlines()
    what = lines[0] if lines else ""
    if not isinstance(e, InternalError):
        what = f"{type(e).__name__}: {what}" if what else type(e).__name__
    hint = "" if verbose() else " (run with -v for the traceback)"
    click.echo(f"Error: {what}{hint}", err=True)
    sys.exit(1)


if __name__ == "__main__":
    main()
