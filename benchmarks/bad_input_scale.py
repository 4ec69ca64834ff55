"""Bad input at scale: `verify` on a folder of 50,000 files, some corrupt, some not images,
some 16-bit PNG or CMYK JPEG; and the refusal of a folder whose class names do not match.

The folder: twelve class folders named as the export's labels, holding hard links to the
real-photo crops of verify_memory.py's pool under new names (the crops cycle through JPEG
with EXIF, RGB, L, P, RGBA and 16-bit PNG), plus CMYK JPEGs made from those crops,
truncated JPEGs, and text files named .jpg and .txt. Each command runs in a child process
(peak RSS from ``os.wait4``):

- ``verify EXPORT --images DIR --limit N --json``: the whole folder listed and checked, a
  seeded sample of N scored (N = the folder's size scores every file);
- the same folder with one class folder renamed, and an empty folder: exit code 2, one
  ``Error:`` line, and how long it took to say so.

    .venv/bin/python benchmarks/bad_input_scale.py --preset demo --files 50000 --limit 5000 \
        --json benchmarks/results/bad_input_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from _bench_utils import run_child, write_result  # noqa: E402
from verify_memory import CLI, photo_export, run_header  # noqa: E402

BAD_KINDS = ("cmyk", "truncated", "text_as_jpg", "notes_txt")


def make_bad_folder(pool: Path, folder: Path, files: int, bad_share: float) -> dict:
    """``folder/<class>/`` with ``files`` files, ``bad_share`` of them CMYK, truncated or not
    images (in equal parts), the rest hard links to the pool's crops; what it holds, by kind."""
    from PIL import Image

    shutil.rmtree(folder, ignore_errors=True)
    classes = sorted(p.name for p in pool.iterdir() if p.is_dir())
    crops = {c: sorted((pool / c).iterdir()) for c in classes}
    made = {"photo_links": 0, "png_16bit_links": 0, **{k: 0 for k in BAD_KINDS}}
    modes = {}
    step = max(1, round(1 / bad_share)) if bad_share > 0 else 0
    for i in range(files):
        c = classes[i % len(classes)]
        src = crops[c][(i // len(classes)) % len(crops[c])]
        d = folder / c
        d.mkdir(parents=True, exist_ok=True)
        bad = step and i % step == step - 1
        kind = BAD_KINDS[(i // step) % len(BAD_KINDS)] if bad else None
        if kind == "cmyk":
            Image.open(src).convert("RGB").convert("CMYK").save(d / f"{i:06d}-cmyk.jpg", "JPEG")
        elif kind == "truncated":
            data = src.read_bytes() if src.suffix == ".jpg" else b"\xff\xd8\xff\xe0" + b"\0" * 64
            (d / f"{i:06d}-truncated.jpg").write_bytes(data[: max(16, len(data) // 3)])
        elif kind == "text_as_jpg":
            (d / f"{i:06d}-text.jpg").write_text("not a photo\n")
        elif kind == "notes_txt":
            (d / f"{i:06d}-notes.txt").write_text("notes\n")
        else:
            os.link(src, d / f"{i:06d}-{src.name}")
            made["photo_links"] += 1
            if src not in modes:
                with Image.open(src) as im:
                    modes[src] = im.mode
            made["png_16bit_links"] += modes[src].startswith("I;16")
            continue
        made[kind] += 1
    return made


def refusal(export_dir: Path, folder: Path) -> dict:
    """``verify`` on a folder it must refuse: exit code, the error line, seconds to say it."""
    start = time.perf_counter()
    proc = subprocess.run([*CLI, "verify", str(export_dir), "--images", str(folder)],
                          capture_output=True, text=True)
    lines = [l for l in proc.stderr.splitlines() if l.startswith("Error:")]
    return {"exit_code": proc.returncode, "error": lines[0] if lines else proc.stderr[-300:],
            "error_lines": len(lines), "traceback": "Traceback" in proc.stderr,
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo", help="model preset (mv3: full size)")
    ap.add_argument("--files", type=int, default=50000)
    ap.add_argument("--bad-share", type=float, default=0.1,
                    help="share of the files that are CMYK, truncated or not images")
    ap.add_argument("--limit", type=int, default=5000, help="images verify scores (seeded sample)")
    ap.add_argument("--photo-size", type=int, default=256, help="long side of each crop, px")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "basisnet-verify-bench"))
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    work = Path(args.work)
    pool, export_dir = photo_export(work, args.photo_size, 5000, 100, args.preset)
    classes = sorted(p.name for p in pool.iterdir() if p.is_dir())
    folder = work / f"bad-{args.files}"
    started = time.perf_counter()
    made = make_bad_folder(pool, folder, args.files, args.bad_share)
    result = {**run_header(), "preset": args.preset, "files": args.files, "folder_holds": made,
              "folder_made_s": round(time.perf_counter() - started, 1)}
    stdout, rss_mb, wall = run_child([*CLI, "verify", str(export_dir), "--images", str(folder),
                                      "--limit", str(args.limit), "--json"])
    v = json.loads(stdout)
    result["verify"] = {"limit": args.limit, "peak_rss_mb": rss_mb, "wall_s": wall,
                        "images": v["images"], "skipped": v["skipped"], "classes": v["classes"],
                        "images_per_s": v["images_per_s"]}
    print(result["verify"], flush=True)
    renamed = folder / "zebra"
    (folder / classes[0]).rename(renamed)
    try:
        result["class_names_not_matching"] = refusal(export_dir, folder)
    finally:
        renamed.rename(folder / classes[0])
    empty = work / "empty"
    shutil.rmtree(empty, ignore_errors=True)
    empty.mkdir()
    result["empty_folder"] = refusal(export_dir, empty)
    result["load_after"] = round(os.getloadavg()[0], 1)
    write_result(result, args.json_out)


if __name__ == "__main__":
    main()
