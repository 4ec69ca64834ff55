"""Every shell command in README.md and docs/*.md runs here, on small data.

The commands are collected from the pages' shell code blocks (no language, or bash/sh/shell/
console); ``COVERAGE`` says how each one runs. A command on a page that ``COVERAGE`` does not
list fails ``test_every_documented_command_is_covered`` until it is added (and a listed command
that no page shows any more fails too), so no command in the docs goes untested.

How a command runs (the ``kind`` in ``COVERAGE``):

- ``run``: as written, in order in one working folder, with the placeholders in ``PATHS``
  replaced by small data (a five-class photo folder from tests/photo_fixture.py, the checkpoint
  and exports the earlier commands wrote) and the flags in ``EXTRA`` appended (a tiny
  architecture and one epoch for ``train``, an assets folder outside the repository for
  ``android-assets``). This is README's "Your own images in five commands", end to end.
- ``options``: too long or needing what this machine lacks (the full `make demo`, GPU
  hardware, two machines): its ``--help`` must name every ``--option`` the command uses, so a
  renamed or removed option fails here.
- ``make-n``: ``make -n`` of it (the target exists and expands), then every `basisnet-deploy`
  command in the expansion is checked as ``options``.
- ``pip-dry``: ``pip install --dry-run --no-index --no-build-isolation`` of it: the extras and
  constraints.txt resolve against the installed packages.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
COMMAND = re.compile(r"^(?:[A-Z_]+=|(?:basisnet-deploy|make|pip|python|\.venv/bin/\S+|mkdocs)\b)")
BIN = Path(sys.executable).parent

# The small data each placeholder of the pages stands for, in the `run` commands' folder.
PATHS = {"photos/": "photos/", "ckpt/": "ckpt/", "export/": "export/", "my_photo.jpg": "photo.png",
         "photo.jpg": "photo.png", "EXPORT_DIR": "export/", "CKPT": "ckpt/", "EXPORT": "export/"}
TINY_ARCH = ["--epochs", "1", "--bases", "3", "--nonshared", "8-15", "--width", "0.35",
             "--resolution", "32", "--light-width", "0.35", "--light-resolution", "16"]
# Flags appended to a `run` command (keyed by its subcommand), and why.
EXTRA = {
    "train": TINY_ARCH,                       # the preset's architecture shrunk, one epoch
    "android-assets": ["--out", "assets/"],   # not into this checkout's android_demo/
}

README_TRAIN = "basisnet-deploy train --dataset photos/ --preset mv3 --classes 5 --out ckpt/"
MAKE_DEMO = "make demo"
MAKE_TEST = "make test"
COVERAGE: dict[str, str] = {
    # README.md and docs/cli.md: your own images, end to end (in this order)
    README_TRAIN: "run",
    "basisnet-deploy export ckpt/ --target tflite --calibration photos/ --int8-recipe fidelity --out export/": "run",
    "basisnet-deploy calibrate-threshold export/ --images photos/ --max-drop 0.5": "run",
    "basisnet-deploy predict export/ my_photo.jpg": "run",
    "basisnet-deploy android-assets export/": "run",
    # docs/android.md
    "basisnet-deploy android-assets EXPORT_DIR": "run",
    # docs/gpu.md: `check` runs on the export above; the float16 export (a minute here) is
    # run by tests/test_gpu.py's float16_tflite fixture; the GPU runs need a GPU device
    "basisnet-deploy check EXPORT": "run",
    "basisnet-deploy export CKPT --target tflite --quantize float16 --out EXPORT": "options",
    "basisnet-deploy bench EXPORT --delegate gpu": "options",
    "basisnet-deploy predict EXPORT photo.jpg --delegate gpu": "options",
    # docs/cli.md examples
    "basisnet-deploy cost --plain mv3-large --json": "run",
    "basisnet-deploy cost --bases 16 --nonshared 11-15 --light-resolution 224": "run",
    # docs/cli.md synopsis: every option it names exists
    "basisnet-deploy train --dataset digits|DIR --out CKPT [--preset demo|mv3|mv2] [arch flags] "
    "[--epochs N --batch-size N --learning-rate LR --held-out F --seed S --strategy "
    "default|mirrored|multi-worker --resize squash|center_crop --augment/--no-augment --cache DIR "
    "--resume --init-from FILE ... --json --json-out F]": "options",
    "basisnet-deploy evaluate CKPT [--dataset digits|DIR] [--limit N] [--json] [--json-out F]": "options",
    "basisnet-deploy cost [CKPT] [arch flags] [--plain mv3-large|mv3-small|mv2] [--json] [--json-out F]": "options",
    "basisnet-deploy export CKPT [--target tflite|onnx] [--out DIR] [--quantize int8|float16|float32] "
    "[--calibration digits|IMAGE_DIR] [--calibration-size N] [--specialist coefficient|presynth|all] "
    "[--input-type float32|int8|uint8] [--int8-recipe auto|full|full-16x8|fidelity|fidelity-int8-lm] [--tuning-steps N] "
    "[--coefficient-int8 dynamic|fakequant] [--min-agreement P] [--allow-low-agreement] "
    "[--verify-images N] [--images DIR] [--baseline] [--seed S] [--json] [--json-out F]": "options",
    "basisnet-deploy verify DIR [--dataset digits | --images DIR] [--limit N] [--delegate xnnpack|cpu|gpu] "
    "[--allow-fallback] [--json] [--json-out F]": "options",
    "basisnet-deploy check DIR [--json] [--json-out F]": "options",
    "basisnet-deploy calibrate-threshold DIR (--max-drop POINTS | --target-madds MADDS) "
    "[--dataset digits | --images DIR] [--limit N] [--plot PNG] [--json] [--json-out F]": "options",
    "basisnet-deploy bench DIR --delegate cpu|xnnpack|gpu|nnapi [--runtime litert|onnxruntime] "
    "[--runner sequential|pipelined|both] [--specialist-form coefficient|presynth] [--threshold T] "
    "[--frames N] [--warmup N] [--threads N] [--images DIR | --dataset digits] [--delegate-path LIB] "
    "[--allow-fallback] [--resynth-tolerance X] [--resynth-every N] [--bases float32|int8] "
    "[--input-fps F] [--drop block|keep-latest] [--json] [--json-out F]": "options",
    "basisnet-deploy predict DIR IMAGE... [same runtime options] [--threshold T] [--json] [--json-out F]": "options",
    "basisnet-deploy report DIR --images digits|DIR --out REPORT_DIR [--bench BENCH_JSON] [--layer L15] "
    "[--classes A,B,...] [--limit N] [--json] [--json-out F]": "options",
    "basisnet-deploy android-assets DIR [--out ASSETS_DIR] [--json] [--json-out F]": "options",
    # training at full size, on two machines
    "TF_CONFIG='{\"cluster\": {\"worker\": [\"10.0.0.1:12345\", \"10.0.0.2:12345\"]}, \"task\": "
    "{\"type\": \"worker\", \"index\": 0}}' basisnet-deploy train --dataset /data/photos --strategy "
    "multi-worker --out ckpt/": "options",
    "TF_CONFIG='{\"cluster\": {\"worker\": [\"10.0.0.1:12345\", \"10.0.0.2:12345\"]}, \"task\": "
    "{\"type\": \"worker\", \"index\": 1}}' basisnet-deploy train --dataset /data/photos --strategy "
    "multi-worker --out ckpt/": "options",
    ".venv/bin/python benchmarks/train_memory.py --sizes 1000 10000 --speed-size 0 --json "
    "benchmarks/results/train_memory.json": "options",
    # make targets (the demo takes minutes and the suite most of an hour)
    MAKE_DEMO: "make-n",
    MAKE_TEST: "make-n",
    "make smoke": "make-n",
    'make demo PYTHON="$(bash scripts/find-python.sh 3.13)"': "make-n",
    'make test PYTHON="$(bash scripts/find-python.sh 3.13)"': "make-n",
    'make smoke SMOKE_PYTHON="$(bash scripts/find-python.sh 3.13)"': "make-n",
    # install
    "pip install -c constraints.txt '.[convert]'": "pip-dry",
    "pip install -c constraints.txt .": "pip-dry",
}


def commands_in(text: str) -> list[str]:
    """The shell commands in a page's shell code blocks: comments dropped, continuation lines
    (a trailing backslash, an open quote, or an indented line below a command) joined."""
    found = []
    for lang, body in re.findall(r"^```([^\n]*)\n(.*?)^```", text, re.M | re.S):
        if lang.strip() not in SHELL_LANGS:
            continue
        current: str | None = None
        for line in body.splitlines():
            line = re.sub(r"(^|\s+)#\s.*$", "", line.rstrip())
            if not line.strip():
                continue
            if current is not None and (current.endswith("\\") or line[:1].isspace() or not complete(current)):
                current = current.rstrip("\\").rstrip() + " " + line.strip()
                continue
            if current is not None:
                found.append(current)
                current = None
            if COMMAND.match(line.strip()):
                current = line.strip()
        if current is not None:
            found.append(current)
    return [normalize(c) for c in found]


def complete(command: str) -> bool:
    try:
        shlex.split(command)
        return True
    except ValueError:
        return False


def normalize(command: str) -> str:
    """One line, one space between words, the trailing comment gone."""
    command = re.sub(r"\s+#\s.*$", "", command) if complete(command) else command
    command = re.sub(r"(?<=[\[{(]) +| +(?=[\]})])", "", " ".join(command.split()))
    return command


def documented() -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for page in PAGES:
        for command in commands_in(page.read_text()):
            where.setdefault(command, []).append(str(page.relative_to(ROOT)))
    return where


def run(cmd: list[str] | str, cwd: Path, timeout: int = 600, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, **kw)


def options_of(command: str) -> tuple[list[str], list[str]]:
    """(the command up to its subcommand or script, the --options it names)."""
    words = [w for w in shlex.split(command.replace("|", " ").replace("[", " ").replace("]", " "))
             if not re.match(r"^[A-Z_]+=", w)]
    head = words[:2] if words[0] == "basisnet-deploy" else words[:2]
    if head[0].startswith(".venv/bin/python"):
        head = [sys.executable, str(ROOT / head[1])]
    names = sorted({n for w in words for n in re.findall(r"--[a-z0-9][a-z0-9-]*", w)})
    return head, names


def check_options(command: str) -> None:
    head, names = options_of(command)
    done = run([*head, "--help"], ROOT, timeout=120)
    assert done.returncode == 0, f"{command}: --help failed\n{done.stderr}"
    unknown = [n for n in names if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", done.stdout)]
    assert not unknown, f"{command}: options not in `{' '.join(head)} --help`: {unknown}"


# ---------------------------------------------------------------------------------------------

def test_every_documented_command_is_covered():
    where = documented()
    uncovered = {c: p for c, p in where.items() if c not in COVERAGE}
    assert not uncovered, ("commands in the docs that no test runs; add each to COVERAGE in "
                           f"tests/test_doc_commands.py: {uncovered}")
    gone = [c for c in COVERAGE if c not in where]
    assert not gone, f"COVERAGE lists commands that no page shows any more: {gone}"


def test_the_collector_finds_commands_comments_and_continuations():
    page = ("text\n\n```\nbasisnet-deploy cost --json   # a comment\n"
            "X=1 \\\n  basisnet-deploy train \\\n    --out ckpt/\nmake demo\n# only a comment\n```\n"
            "```python\nbasisnet-deploy not-shell\n```\n"
            "```\nbasisnet-deploy train [--a N\n                      --b M]\n```\n")
    assert commands_in(page) == ["basisnet-deploy cost --json", "X=1 basisnet-deploy train --out ckpt/",
                                 "make demo", "basisnet-deploy train [--a N --b M]"]


def test_an_unknown_option_fails_the_options_check():
    with pytest.raises(AssertionError, match="--no-such-flag"):
        check_options("basisnet-deploy export CKPT --no-such-flag")


@pytest.mark.parametrize("command", [c for c, k in COVERAGE.items() if k == "options"])
def test_documented_options_exist(command):
    check_options(command)


@pytest.mark.parametrize("command", [c for c, k in COVERAGE.items() if k == "make-n"])
def test_make_targets_expand(command):
    done = run(["bash", "-c", command.replace("make ", "make -n ", 1)], ROOT, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line[line.index("basisnet-deploy"):] for line in done.stdout.splitlines()
             if re.search(r"(^|/)basisnet-deploy ", line)]
    if command.startswith(MAKE_DEMO):
        assert len(lines) >= 8, done.stdout
    for line in lines:
        check_options(line)


def test_make_demo_runs_every_gpu_step_with_the_software_gpu_where_none_is_set(tmp_path):
    """The exports' GPU checks and the GPU bench get GPU_ENV (the Makefile's SwiftShader ICD,
    here a stand-in file so the check does not depend on this machine)."""
    icd = tmp_path / "icd.json"
    icd.write_text("{}")
    env = {k: v for k, v in os.environ.items() if k != "VK_ICD_FILENAMES"}
    done = subprocess.run(["make", "-n", "demo", f"SWIFTSHADER_ICD={icd}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    steps = [line for line in done.stdout.splitlines()
             if re.search(r"basisnet-deploy (export|bench .*--delegate gpu)", line)]
    assert len(steps) == 3, done.stdout
    for line in steps:
        assert line.startswith(f"env VK_ICD_FILENAMES={icd} "), line


@pytest.mark.parametrize("command", [c for c, k in COVERAGE.items() if k == "pip-dry"])
def test_install_commands_resolve(command):
    words = shlex.split(command)
    assert words[:2] == ["pip", "install"]
    done = run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index",
                "--no-build-isolation", *words[2:]], ROOT, timeout=300)
    assert done.returncode == 0 and "Would install basisnet-deploy" in done.stdout, done.stdout + done.stderr


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """A new user's folder: photos/<class>/<images> with five classes (20 photos each)."""
    from tests import photo_fixture

    work = tmp_path_factory.mktemp("user")
    classes = tuple(sorted(photo_fixture.PHOTOS))[:5]
    photo_fixture.build(work / "fixture", train_per_class=20, heldout_per_class=1, size=48,
                        classes=classes)
    (work / "fixture" / "train").rename(work / "photos")
    first = sorted((work / "photos" / classes[0]).iterdir())[0]
    from PIL import Image

    Image.open(first).convert("RGB").save(work / "photo.png")
    return work


def substituted(command: str) -> list[str]:
    words = [PATHS.get(w, w) for w in shlex.split(command)]
    if words[0] == "basisnet-deploy":
        words += EXTRA.get(words[1], [])
    return words


def test_the_documented_commands_run_in_order(user_folder):
    """README's "Your own images in five commands" (and the other `run` commands after it),
    one after the other in one folder, as a new user would: each exits 0."""
    outputs = {}
    for command in [c for c, k in COVERAGE.items() if k == "run"]:
        done = run(substituted(command), user_folder)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        outputs[command] = done.stdout
    assert (user_folder / "export" / "manifest.json").is_file()
    assert "answered by the" in outputs["basisnet-deploy predict export/ my_photo.jpg"]
    assert (user_folder / "assets" / "manifest.json").is_file()
    assert '"madds": 216589760' in outputs["basisnet-deploy cost --plain mv3-large --json"]
