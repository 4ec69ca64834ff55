"""Write docs/benchmarks.md from the JSON files under benchmarks/results/ (``--check``: exit 1 if
the committed page differs from what the JSON files say now). Every figure on the page is read
from a JSON file, with the machine, date and command that the file records; a missing file or
key stops the generator with an error that names it. tests/test_benchmark_pages.py runs the
check, and checks README's "Performance at a glance" against ``README_FIGURES`` below.

    .venv/bin/python scripts/gen_benchmark_pages.py [--check]

After re-running a benchmark (its ``--json`` writes the file under benchmarks/results/), run
this script: the page and README's figures follow the new JSON.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "benchmarks.md"


class MissingResult(SystemExit):
    """A figure's JSON file or key is missing: the message names both."""


def load(name: str) -> dict:
    path = RESULTS / name
    if not path.is_file():
        raise MissingResult(f"benchmarks/results/{name}: no such file (a figure on "
                            f"{PAGE.relative_to(ROOT)} is read from it; re-run its benchmark "
                            "with --json, or drop the figure from scripts/gen_benchmark_pages.py)")
    return json.loads(path.read_text())


def get(name: str, *keys: str):
    """``load(name)[keys[0]][keys[1]]...``, or MissingResult naming the file and the key."""
    value = load(name)
    for i, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            raise MissingResult(f"benchmarks/results/{name}: no key {'/'.join(keys[:i + 1])!r}")
        value = value[key]
    return value


def pct(x: float) -> str:
    return f"{x:.2f}%"


def ratio(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}x"


def ms(x: float) -> str:
    return f"{x:.2f} ms"


def mb(x: float) -> str:
    return f"{x:,.0f} MB"


@dataclass(frozen=True)
class Figure:
    """One figure: its label, the JSON it comes from and how it is computed and written."""
    key: str            # a short id, used by README_FIGURES
    label: str
    source: str         # file under benchmarks/results/
    value: Callable[[], str]


@dataclass(frozen=True)
class Section:
    title: str
    source: str         # the JSON whose machine/date/command the section shows
    what: str
    figures: tuple[Figure, ...]


FID_TFLITE = "fidelity_photos/tflite5_weight_only.json"
FID_ONNX = "fidelity_photos/onnx5_fidelity.json"
INT8LM_TFLITE = "fidelity_photos/tflite8_int8_lm.json"
INT8LM_ONNX = "fidelity_photos/onnx8_int8_lm.json"


def fidelity_min(name: str) -> float:
    """The lowest agreement of the fidelity recipe's artifacts (float32 LM, dynamic-range
    coefficient-input specialist, weight-only template), isolated and end to end."""
    return min(get(name, "lm", "float32", "agreement"),
               *(get(name, form, q, stage, "agreement")
                 for form, q in (("coefficient", "dynamic"), ("presynth", "weight_only"))
                 for stage in ("isolated", "end_to_end (LM float32)")))


def int8_lm_specialists(name: str) -> tuple[float, float]:
    """fidelity-int8-lm's specialists end to end behind the tuned LM: (lowest, highest)."""
    stage = "end_to_end (LM weight_only_tuned)"
    values = [get(name, "coefficient", "dynamic", stage, "agreement"),
              get(name, "presynth", "weight_only_tuned", stage, "agreement")]
    return min(values), max(values)


def recipe(role: str, name: str = "int8 fidelity") -> float:
    return get("recipe_latency_full.json", "median_ms", role, name)


PERSISTENT = "persistent_specialist.json"
PERSISTENT_PHOTOS = "persistent_specialist_photos.json"


def persistent_ms(key: str) -> float:
    return get(PERSISTENT, "median_ms", key)


def pipelined() -> dict:
    return get("exact_basisnet.json", "full_load")


def demo_exit() -> dict:
    """``calibrate-threshold --json`` of the demo export: the chosen threshold's exit rate,
    MAdds cut and top-1 change against never exiting."""
    chosen = get("demo_early_exit.json", "chosen")
    return {"exit_rate": chosen["exit_rate"],
            "madds_cut": 1 - chosen["avg_madds"] / get("demo_early_exit.json", "full_madds"),
            "points": 100 * (chosen["accuracy"] - get("demo_early_exit.json", "no_exit_accuracy"))}


def verify_runs() -> dict:
    return get("verify_memory_mv3_5000.json", "runs")


THROUGHPUT = "verify_throughput_mv3_repeats.json"


def scoring_rss(name: str) -> str:
    runs = get(name, "runs")
    return f"{runs['100']['peak_rss_mb']:,.1f} / {runs['5000']['peak_rss_mb']:,.1f} MB"


def throughput() -> tuple[float, float]:
    """Median images/s of the streamed and the stacked (previous) verification."""
    runs = get(THROUGHPUT, "runs", "100")
    stacked = next(k for k in runs if k.startswith("stacked"))
    return runs["streamed"]["median_images_per_s"], runs[stacked]["median_images_per_s"]


def train_runs() -> dict:
    return get("train_memory.json", "memory")


TEMPLATE_TUNING = "template (specialist's static layers)"


def tuning(name: str, model: str, key: str) -> float:
    return get(name, "models", model, key)


def tuning_sections() -> tuple[Section, ...]:
    """One section per preset of benchmarks/tuning_time.py: seconds per step and per epoch."""
    sections = []
    for preset, title in (("demo", "demo preset"), ("mv3", "full size")):
        name = f"tuning_time_{preset}.json"
        figures = []
        for model, role, label in (("lightweight", "lm", "LM"), (TEMPLATE_TUNING, "tpl", "template's static layers")):
            short = f"tune_{preset}_{role}"
            figures += [
                Figure(f"{short}_step", f"{label}: seconds per step (batch of 32)", name,
                       lambda n=name, m=model: f"{tuning(n, m, 'seconds_per_step'):.3f} s"),
                Figure(f"{short}_epoch", f"{label}: an epoch over 1,500 images", name,
                       lambda n=name, m=model: f"{tuning(n, m, 'epoch_seconds_1500_images'):,.1f} s"),
                Figure(f"{short}_2000", f"{label}: 2,000 steps on 1,500 images, projected", name,
                       lambda n=name, m=model: f"{tuning(n, m, 'projected_tuning_seconds_2000_steps_1500_images'):,.0f} s"),
            ]
        sections.append(Section(f"Int8 weight tuning time, {title}", name,
                                "time of the int8 weight tuning (`fidelity-int8-lm`, `full-16x8`), "
                                "from two runs of different lengths (benchmarks/tuning_time.py)",
                                tuple(figures)))
    return tuple(sections)


SECTIONS: tuple[Section, ...] = (
    Section("Agreement with float on photos: the fidelity recipe", FID_TFLITE,
            "top-1 agreement of each int8 artifact with the float model on the held-out photos "
            "of the photo fixture checkpoint (benchmarks/fidelity_photos.py)", (
        Figure("fid_photos", "held-out photos", FID_TFLITE, lambda: f"{get(FID_TFLITE, 'heldout_images'):,}"),
        Figure("fid_tflite_min", "TFLite: lowest artifact agreement, isolated and end to end",
               FID_TFLITE, lambda: pct(fidelity_min(FID_TFLITE))),
        Figure("fid_onnx_min", "ONNX: lowest artifact agreement, isolated and end to end",
               FID_ONNX, lambda: pct(fidelity_min(FID_ONNX))),
    )),
    Section("Agreement with float on photos: the fidelity-int8-lm recipe", INT8LM_TFLITE,
            "every weight int8, the LM and template tuned first (same checkpoint and photos)", (
        Figure("i8_lm", "LM (weight-only, tuned) agreement", INT8LM_TFLITE,
               lambda: pct(get(INT8LM_TFLITE, "lm", "weight_only_tuned", "agreement"))),
        Figure("i8_coef", "LM coefficient max abs error", INT8LM_TFLITE,
               lambda: f"{get(INT8LM_TFLITE, 'lm', 'weight_only_tuned', 'coef_max_abs'):.3f}"),
        Figure("i8_spec", "specialists end to end behind the tuned LM (TFLite)", INT8LM_TFLITE,
               lambda: "{:.2f}-{:.2f}%".format(*int8_lm_specialists(INT8LM_TFLITE))),
        Figure("i8_spec_onnx", "specialists end to end behind the tuned LM (ONNX)", INT8LM_ONNX,
               lambda: "{:.2f}-{:.2f}%".format(*int8_lm_specialists(INT8LM_ONNX))),
        Figure("i8_smaller", "LM file, float32 over int8 (TFLite)", INT8LM_TFLITE,
               lambda: ratio(get(INT8LM_TFLITE, "lm", "float32", "bytes")
                             / get(INT8LM_TFLITE, "lm", "weight_only_tuned", "bytes"), 1)),
    )),
    Section("Full-size latency per recipe (LiteRT, XNNPACK, 1 thread)", "recipe_latency_full.json",
            "median invoke time of each artifact of BasisNet-MV3 (MV3-S 128 LM, MV3-L 224 specialist)", (
        Figure("lat_lm", "LM, fidelity", "recipe_latency_full.json", lambda: ms(recipe("lightweight"))),
        Figure("lat_tpl", "pre-synthesized template, fidelity", "recipe_latency_full.json",
               lambda: ms(recipe("specialist_presynth"))),
        Figure("lat_tpl_ratio", "template: float32 time over fidelity time", "recipe_latency_full.json",
               lambda: ratio(recipe("specialist_presynth", "float32") / recipe("specialist_presynth"))),
        Figure("lat_coef", "coefficient-input specialist, fidelity", "recipe_latency_full.json",
               lambda: ms(recipe("specialist_coefficient"))),
    )),
    Section("Exact per-frame BasisNet, full size", "exact_basisnet.json",
            "every frame re-synthesizes the template (no early exit), int8 export, 300 frames", (
        Figure("exact_fps", "pipelined runner throughput", "exact_basisnet.json",
               lambda: f"{pipelined()['runners']['pipelined']['throughput_fps']:.1f} fps"),
        Figure("exact_vs_plain", "pipelined over a plain int8 MV3-L", "exact_basisnet.json",
               lambda: ratio(pipelined()["vs_baseline_fps"]["pipelined"], 3)),
        Figure("exact_vs_seq", "pipelined over sequential", "exact_basisnet.json",
               lambda: ratio(pipelined()["pipelined_vs_sequential"])),
    )),
    Section("Persistent specialist: kernels as model inputs, full size", PERSISTENT,
            "exact per-frame BasisNet with one float32 specialist whose non-shared kernels are "
            "inputs, mixed into its input buffers each frame (no interpreter per frame); LiteRT, "
            "XNNPACK, 1 thread per model (benchmarks/persistent_specialist.py)", (
        Figure("pers_invoke", "invoke: persistent / static float32 / plain int8 MV3-L", PERSISTENT,
               lambda: " / ".join(ms(persistent_ms(k)) for k in (
                   "persistent_batch_matmul_invoke", "static_float32_invoke", "plain_int8_invoke"))),
        Figure("pers_mix", "float32 mix into the kernel inputs, per frame", PERSISTENT,
               lambda: ms(persistent_ms("persistent_batch_matmul_write"))),
        Figure("pers_overhead", "host overhead: mix + invoke over the static float32 invoke", PERSISTENT,
               lambda: ms(get(PERSISTENT, "persistent_batch_matmul_vs",
                              "host_overhead_ms (write + extra invoke)"))),
        Figure("pers_e2e", "pipelined over a plain int8 MV3-L: persistent / re-created int8 template",
               PERSISTENT, lambda: " / ".join(ratio(get(PERSISTENT, "end_to_end", k), 3) for k in (
                   "median_persistent_vs_plain", "median_recreate_vs_plain"))),
        Figure("pers_photos", "agreement with float on held-out photos, end to end (demo preset)",
               PERSISTENT_PHOTOS, lambda: pct(get(PERSISTENT_PHOTOS, "end_to_end", "agreement_percent"))),
    )),
    Section("Early exit, demo model on digits", "demo_early_exit.json",
            "`calibrate-threshold --max-drop 0.5` on the `make demo` TFLite export", (
        Figure("exit_rate", "frames that exit after the LM", "demo_early_exit.json",
               lambda: f"{100 * demo_exit()['exit_rate']:.1f}%"),
        Figure("exit_madds", "fewer average MAdds", "demo_early_exit.json",
               lambda: f"{100 * demo_exit()['madds_cut']:.1f}%"),
        Figure("exit_drop", "top-1 change (points)", "demo_early_exit.json",
               lambda: f"{demo_exit()['points']:+.2f}"),
    )),
    Section("`verify` memory, full size", "verify_memory_mv3_5000.json",
            "peak RSS of `basisnet-deploy verify` on 100 and on 5,000 held-out photos", (
        Figure("verify_rss", "peak RSS, 100 / 5,000 photos", "verify_memory_mv3_5000.json",
               lambda: f"{verify_runs()['100']['peak_rss_mb']:,.0f} / {mb(verify_runs()['5000']['peak_rss_mb'])}"),
        Figure("verify_ratio", "5,000 over 100", "verify_memory_mv3_5000.json",
               lambda: ratio(get("verify_memory_mv3_5000.json", "rss_ratio_large_over_small"), 3)),
    )),
    Section("Scoring at scale, full size", "report_memory_mv3.json",
            "peak RSS of `report`, `calibrate-threshold` and export's own verification, and "
            "verification throughput against a verification holding every image at once, "
            "rebuilt from git for comparison (benchmarks/scoring_memory.py)", (
        Figure("report_rss", "`report` peak RSS, 100 / 5,000 photos", "report_memory_mv3.json",
               lambda: scoring_rss("report_memory_mv3.json")),
        Figure("threshold_rss", "`calibrate-threshold` peak RSS, 100 / 5,000 photos",
               "threshold_memory_mv3.json", lambda: scoring_rss("threshold_memory_mv3.json")),
        Figure("scoring_ratio", "5,000 over 100, each", "report_memory_mv3.json",
               lambda: ratio(max(get(f, "rss_ratio_large_over_small")
                                 for f in ("report_memory_mv3.json", "threshold_memory_mv3.json")), 3)),
        Figure("export_rss", "`export --verify-images 100` peak RSS (whole export, float32)",
               "export_verify_memory_mv3.json",
               lambda: mb(get("export_verify_memory_mv3.json", "runs", "100", "peak_rss_mb"))),
        Figure("verify_rate", "verification images/s, streamed vs stacked (medians of 3)",
               THROUGHPUT, lambda: "{:.2f} vs {:.2f} images/s".format(*throughput())),
    )),
    Section("Training memory, phone-sized photos", "train_memory.json",
            "peak RSS of `train --preset demo` on 1,000 and 10,000 2000x1500 JPEGs", (
        Figure("train_sizes", "runs (photos)", "train_memory.json",
               lambda: " and ".join(f"{int(n):,}" for n in sorted(train_runs(), key=int))),
        Figure("train_rss", "peak RSS, 10,000 photos", "train_memory.json",
               lambda: mb(train_runs()["10000"]["peak_rss_mb"])),
        Figure("train_ratio", "10,000 over 1,000 photos", "train_memory.json",
               lambda: ratio(train_runs()["10000"]["peak_rss_mb"] / train_runs()["1000"]["peak_rss_mb"])),
    )),
    *tuning_sections(),
)

FIGURES = {f.key: f for s in SECTIONS for f in s.figures}

# README.md "Performance at a glance": each figure there is one of these, written as the page
# writes it; tests/test_benchmark_pages.py checks that README shows exactly these figures.
README_FIGURES = ("fid_photos", "fid_tflite_min", "fid_onnx_min", "i8_lm", "i8_coef", "i8_spec", "i8_smaller",
                  "lat_lm", "lat_tpl", "lat_tpl_ratio", "lat_coef", "exact_fps", "exact_vs_plain",
                  "exact_vs_seq", "exit_rate", "exit_madds", "exit_drop", "verify_rss",
                  "verify_ratio", "report_rss", "threshold_rss", "scoring_ratio", "export_rss",
                  "verify_rate", "train_sizes", "train_rss", "train_ratio")


def provenance(name: str) -> list[str]:
    """The machine, date and command the JSON records ("not recorded" where it does not)."""
    data = load(name)
    recorded = data.get("recorded", {})
    machine = recorded.get("machine") or data.get("machine") or data.get("runtime")
    cpu = recorded.get("cpu")
    date = recorded.get("date") or data.get("date")
    command = recorded.get("command") or data.get("command")
    load_average = recorded.get("load_average")
    if command:
        how = f"- command: `{scratch(command)}`"
    elif isinstance(data.get("args"), dict):
        how = "- command: not recorded; its arguments: " + ", ".join(
            f"`{k}={scratch(str(v))}`" for k, v in data["args"].items() if v not in ("", None))
    else:
        how = "- command: not recorded in the JSON"
    return [f"- machine: {machine or 'not recorded'}" + (f"; CPU: {cpu}" if cpu else "")
            + (f"; load average (1, 5, 15 min) as recorded: {', '.join(map(str, load_average))}" if load_average else ""),
            f"- date: {date or 'not recorded in the JSON'}", how]


def scratch(text: str) -> str:
    """A scratch folder of the machine that ran the benchmark (under /tmp) shown as WORK/."""
    return re.sub(r"(?<![\w.])/tmp/", "WORK/", text)


def render() -> str:
    parts = ["# Benchmarks", "",
             "Generated from the JSON files under `benchmarks/results/` by "
             "`scripts/gen_benchmark_pages.py`; do not edit by hand. Each section names the "
             "file its figures come from and the machine, date and command that the file "
             "records (a scratch folder of that machine is shown as `WORK/`). The benchmark scripts "
             "and their experiment log: "
             "[benchmarks/README.md](../benchmarks/README.md).", ""]
    for section in SECTIONS:
        parts += [f"## {section.title}", "", section.what[:1].upper() + section.what[1:] + ".", "",
                  f"Source: [`benchmarks/results/{section.source}`](../benchmarks/results/{section.source})", "",
                  *provenance(section.source), "",
                  "| figure | value | JSON |", "| --- | --- | --- |"]
        for fig in section.figures:
            parts.append(f"| {fig.label} | {fig.value()} | `{fig.source}` |")
        parts.append("")
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    try:
        text = render()
    except MissingResult as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from _generated_page import write_or_check  # scripts/, beside this file

    return write_or_check(PAGE, text, argv, "scripts/gen_benchmark_pages.py")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
