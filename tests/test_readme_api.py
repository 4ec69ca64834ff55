"""README's Python API example runs as written (only its three paths are replaced)."""

import re
from pathlib import Path

from basisnet_deploy.data import digits

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text()
    block = re.search(r"<!-- api-example:start -->\n```python\n(.*?)```\n<!-- api-example:end -->",
                      text, re.S)
    assert block, "README lost its api-example block"
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
