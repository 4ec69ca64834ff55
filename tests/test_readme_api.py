"""README's Python API example runs as written (only its three paths are replaced)."""

import re
from pathlib import Path

from basisnet_deploy.data import digits

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _example(page: Path = README, name: str = "api-example") -> str:
    text = page.read_text()
    block = re.search(rf"<!-- {name}:start -->\n```python\n(.*?)```\n<!-- {name}:end -->", text, re.S)
    assert block, f"{page.name} lost its {name} block"
    return block.group(1)


def test_readme_python_api_example_runs(ckpt, tmp_path, capsys):
    image = tmp_path / "digit.png"
    digits().images[3].save(image)
    code = (_example().replace('"runs/demo/ckpt"', repr(str(ckpt)))
            .replace('"runs/demo/export-api"', repr(str(tmp_path / "ex")))
            .replace('"digit.png"', repr(str(image))))
    code = code.replace('ExportOptions(target="tflite", calibration="digits")',
                        'ExportOptions(target="tflite", calibration="digits", calibration_size=16, '
                        'verify_images=8)')
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    assert "'lightweight': 'lightweight.tflite'" in lines[0]
    assert lines[1].split()[-1] in ("lightweight", "specialist")
    assert (tmp_path / "ex" / "manifest.json").is_file()


def test_the_runner_example_of_docs_runtime_runs(float_tflite, tmp_path, capsys):
    """docs/runtime.md's frame-by-frame example, as written: it once called TwoStageRunner
    with keywords it does not take."""
    image = tmp_path / "digit.png"
    digits().images[3].save(image)
    code = (_example(ROOT / "docs" / "runtime.md", "runner-example")
            .replace('"runs/demo/export-tflite"', repr(str(float_tflite[0])))
            .replace('"digit.png"', repr(str(image))))
    exec(compile(code, "docs/runtime.md", "exec"), {})
    index, name, confidence, stage, times = capsys.readouterr().out.strip().split(" ", 4)
    assert index == "0" and name in [str(d) for d in range(10)] and 0 < float(confidence) <= 1
    assert stage in ("lightweight", "specialist") and "lightweight" in times
