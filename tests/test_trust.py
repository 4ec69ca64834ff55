"""Everything read from an export is untrusted: paths, checksums, patch tables, model bytes."""

import hashlib
import json
import shutil

import numpy as np
import pytest

from basisnet_deploy.artifacts.manifest import check_files, load_manifest
from basisnet_deploy.artifacts.model_check import ModelCheckError, check_tflite
from basisnet_deploy.artifacts.synthesis import load_presynth
from basisnet_deploy.cli import main
from basisnet_deploy.common.errors import UserError


@pytest.fixture
def export_copy(int8_tflite, tmp_path):
    out = tmp_path / "ex"
    shutil.copytree(int8_tflite[0], out)
    return out


def _edit_manifest(directory, fn):
    path = directory / "manifest.json"
    m = json.loads(path.read_text())
    fn(m)
    path.write_text(json.dumps(m))


def _forge(directory, name, data: bytes, key: str):
    """Replace ``name`` and rewrite its sha256 in the manifest, as an attacker could."""
    (directory / name).write_bytes(data)

    def fn(m):
        entry = m["artifacts"]["specialist_presynth"]
        entry[key] = hashlib.sha256(data).hexdigest()
    _edit_manifest(directory, fn)


def _cli_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert "Traceback" not in err and len([ln for ln in err.splitlines() if ln.startswith("Error:")]) == 1
    return err


def test_a_symlink_inside_the_export_that_leaves_it_is_refused(export_copy, tmp_path):
    outside = tmp_path / "secret.bin"
    outside.write_bytes((export_copy / "specialist_bases.npz").read_bytes())
    (export_copy / "specialist_bases.npz").unlink()
    (export_copy / "specialist_bases.npz").symlink_to(outside)
    with pytest.raises(UserError, match="outside the export directory"):
        check_files(export_copy, load_manifest(export_copy))


@pytest.mark.parametrize("command", ["check", "predict", "android-assets"])
def test_traversal_names_are_refused_by_every_command(export_copy, tmp_path, capsys, command):
    _edit_manifest(export_copy, lambda m: m["artifacts"]["specialist_presynth"].update(
        patch_table="../../escape.json"))
    argv = {"check": ["check", str(export_copy)],
            "predict": ["predict", str(export_copy), str(tmp_path / "x.png")],
            "android-assets": ["android-assets", str(export_copy), "--out", str(tmp_path / "a")]}
    err = _cli_error(argv[command], capsys)
    assert "not a plain file name inside the export directory" in err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("name,what", [("specialist_bases.npz", "bases"),
                                       ("specialist_patches.json", "patch table")])
def test_tampered_bases_and_patch_table_fail_the_checksum(export_copy, capsys, name, what):
    data = bytearray((export_copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (export_copy / name).write_bytes(bytes(data))
    for command in ("check", "predict"):
        argv = [command, str(export_copy)] + (["nothing.png"] if command == "predict" else [])
        err = _cli_error(argv, capsys)
        assert name in err and f"({what})" in err and "sha256 differs" in err


def test_manifest_without_a_patch_table_checksum_is_refused(export_copy):
    _edit_manifest(export_copy, lambda m: m["artifacts"]["specialist_presynth"].pop("patch_table_sha256"))
    with pytest.raises(UserError, match="lacks 'patch_table_sha256'"):
        load_manifest(export_copy)


def _set(m: dict, dotted: str, value):
    *parents, key = dotted.split(".")
    for name in parents:
        m = m[name]
    m[key] = value


# Hand edits that reached the runtime (a raw IndexError, TypeError or ValueError, or a threshold
# that every frame or no frame passes, or a negative MAdds figure in bench), and the field named.
BAD_VALUES = [
    ("labels", ["0", "1", "2", "3", "4"], "labels has 5 names but architecture.num_classes is 10"),
    ("early_exit.threshold", "high", "early_exit.threshold"),
    ("early_exit.threshold", 5, "early_exit.threshold"),
    ("early_exit.threshold", -1, "early_exit.threshold"),
    ("early_exit.threshold", float("nan"), "early_exit.threshold"),
    ("early_exit.threshold", True, "early_exit.threshold"),
    ("preprocessing.lightweight_resolution", -16, "preprocessing.lightweight_resolution"),
    ("preprocessing.specialist_resolution", 0, "preprocessing.specialist_resolution"),
    ("preprocessing.specialist_resolution", 48, "preprocessing.specialist_resolution is 48 but architecture.resolution"),
    ("cost.stages.lightweight.madds", -1, "cost.stages.lightweight.madds"),
    ("cost.madds", float("inf"), "cost.madds"),
    # ["a", "b"] passed (its low sorts below its high) and reached preprocessing's arithmetic
    ("preprocessing.input_range", ["a", "b"], "preprocessing.input_range: two finite numbers"),
    ("preprocessing.input_range", [-1, True], "preprocessing.input_range: two finite numbers"),
    ("preprocessing.input_range", [-1, 0, 1], "preprocessing.input_range: two finite numbers"),
    ("preprocessing.input_range", [1, -1], "preprocessing.input_range: low must be below high"),
    # an integer past float's range was an OverflowError; float32 inputs cannot hold 1e39
    ("preprocessing.input_range", [0, 10 ** 400], "preprocessing.input_range: two finite numbers"),
    ("preprocessing.input_range", [0, 1e39], "preprocessing.input_range: two finite numbers"),
    ("preprocessing.input_range", [-3e38, 3e38], "preprocessing.input_range: [-3e+38, 3e+38] spans more"),
]


@pytest.mark.parametrize("command", ["check", "predict"])
@pytest.mark.parametrize("key,value,field", BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_out_of_range_manifest_values_are_refused_on_load(export_copy, tmp_path, capsys,
                                                          command, key, value, field):
    from PIL import Image

    Image.new("RGB", (20, 20), (9, 9, 9)).save(tmp_path / "x.png")
    _edit_manifest(export_copy, lambda m: _set(m, key, value))
    argv = [command, str(export_copy)] + ([str(tmp_path / "x.png")] if command == "predict" else [])
    err = _cli_error(argv, capsys)
    fix = "calibrate-threshold" if key == "early_exit.threshold" else "basisnet-deploy export"
    assert f"{export_copy / 'manifest.json'}: {field}" in err and fix in err


def test_labels_edited_with_the_class_count_are_refused_when_the_artifact_answers(export_copy, tmp_path,
                                                                                capsys):
    """Labels and architecture.num_classes edited together pass the manifest's own checks;
    the runner refuses them once an artifact answers another number of classes (before, a
    class index past the labels was a raw IndexError, and one within them another name)."""
    from PIL import Image

    Image.new("RGB", (20, 20), (9, 9, 9)).save(tmp_path / "x.png")
    _edit_manifest(export_copy, lambda m: (m.update(labels=[f"c{i}" for i in range(9)]),
                                           m["architecture"].update(num_classes=9)))
    err = _cli_error(["predict", str(export_copy), str(tmp_path / "x.png"), "--threshold", "none"], capsys)
    assert "lightweight.tflite: answers logits of shape [10] but the manifest names 9 labels" in err, err
    assert "re-run basisnet-deploy export" in err


def test_check_without_a_gpu_shows_the_verdict_measured_at_export(export_copy, capsys):
    """With no GPU here, check's static guess comes with the verdict the export measured on a
    device (the manifest's), which says more than the guess."""
    from basisnet_deploy.runtime.gpu import GpuStatus, GpuVerdict

    measured = GpuVerdict("lightweight.tflite", GpuStatus.MISCOMPUTES, adapter="Mali-G78 MP20",
                          reason="outputs differ from the CPU's (max rel err 3.1e-01)", probes=4)
    _edit_manifest(export_copy, lambda m: m["artifacts"]["lightweight"].update(gpu=measured.to_json()))
    with pytest.raises(SystemExit) as e:
        main(["check", str(export_copy), "--json"])
    assert e.value.code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lightweight"]["gpu"]["status"] == "static-guess", report["lightweight"]
    assert report["lightweight"]["gpu_at_export"]["status"] == "miscomputes"
    assert "gpu_at_export" not in report["specialist_presynth"]  # its export recorded a guess
    with pytest.raises(SystemExit) as e:
        main(["check", str(export_copy)])
    out = capsys.readouterr().out
    assert ("at export, on Mali-G78 MP20: miscomputes: outputs differ from the CPU's "
            "(max rel err 3.1e-01)") in out, out


@pytest.mark.parametrize("recorded", [
    {"artifact": "l", "status": "runs"},  # runs without max_rel: the text could not render it
    {"artifact": "l", "status": "miscomputes", "max_rel": "x"},
    {"artifact": "l", "status": "refused", "adapter": 7},
    {"artifact": "l", "status": "unknown"},
    "runs",
], ids=["runs-no-max-rel", "max-rel-text", "adapter-number", "unknown-status", "not-an-object"])
def test_check_ignores_a_hand_edited_export_time_verdict(export_copy, capsys, recorded):
    """A recorded verdict that is not one is left out of check's output, never a crash."""
    _edit_manifest(export_copy, lambda m: m["artifacts"]["lightweight"].update(gpu=recorded))
    for argv in (["check", str(export_copy), "--json"], ["check", str(export_copy)]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        out = capsys.readouterr().out
        assert e.value.code == 0 and "gpu_at_export" not in out and "at export" not in out, out


def test_check_lists_the_ops_the_gpu_refused_at_export(export_copy, capsys):
    from basisnet_deploy.runtime.gpu import GpuStatus, GpuVerdict

    refused = GpuVerdict("/tmp/x/lightweight.tflite", GpuStatus.REFUSED, adapter="Adreno 740",
                         reason="HARD_SWISH: not supported", unsupported_ops=["HARD_SWISH: not supported"])
    _edit_manifest(export_copy, lambda m: m["artifacts"]["lightweight"].update(gpu=refused.to_json()))
    with pytest.raises(SystemExit):
        main(["check", str(export_copy)])
    out = capsys.readouterr().out
    assert "at export, on Adreno 740: refused: HARD_SWISH: not supported\n        HARD_SWISH: not supported" in out, out
    with pytest.raises(SystemExit):
        main(["check", str(export_copy), "--json"])
    # the export's temporary folder is not the artifact: the manifest's file name is
    assert json.loads(capsys.readouterr().out)["lightweight"]["gpu_at_export"]["artifact"] == "lightweight.tflite"


def _presynth_error(directory) -> str:
    m = load_manifest(directory)
    check_files(directory, m)
    with pytest.raises(UserError) as e:
        load_presynth(directory, m.artifacts[next(r for r in m.artifacts if r.value == "specialist_presynth")])
    return str(e.value)


@pytest.mark.parametrize("damage,message", [
    (lambda t, size: t[0].update(weight_offset=size - 2), "past the template"),
    (lambda t, size: t[0].update(weight_offset=-5), "past the template"),
    (lambda t, size: t[1].update(weight_offset=t[0]["weight_offset"]), "share bytes"),
    (lambda t, size: t[0].update(slot=99), "slot 99"),
    (lambda t, size: t[0].update(shape=[1, 2]), "no bases of shape"),
    (lambda t, size: t[0].update(input_scale=0), "input_scale"),
    (lambda t, size: t[0].pop("layer"), "not a patch table"),
    (lambda t, size: t[0].update(per_tensor=True), "per_tensor applies to int8 kernels without"),
    (lambda t, size: t[0].update(per_tensor="yes", bias_offset=-1), "per_tensor applies"),
])
def test_bad_patch_tables_are_refused_before_any_write(export_copy, damage, message):
    table = json.loads((export_copy / "specialist_patches.json").read_text())
    size = (export_copy / "specialist_presynth.tflite").stat().st_size
    damage(table, size)
    _forge(export_copy, "specialist_patches.json", json.dumps(table).encode(), "patch_table_sha256")
    assert message in _presynth_error(export_copy)


@pytest.mark.parametrize("damage", ["zip", "shape", "nan"])
def test_bad_bases_npz_is_refused(export_copy, damage, tmp_path):
    path = export_copy / "specialist_bases.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    name = sorted(arrays)[0]
    if damage == "zip":
        data = path.read_bytes()[:200]
    else:
        arrays[name] = arrays[name][..., :1] if damage == "shape" else np.full_like(arrays[name], np.nan)
        np.savez(tmp_path / "b.npz", **arrays)
        data = (tmp_path / "b.npz").read_bytes()
    _forge(export_copy, "specialist_bases.npz", data, "bases_sha256")
    expected = "no bases of shape" if damage == "shape" else "specialist_bases.npz"
    assert expected in _presynth_error(export_copy)


def test_flatbuffer_walk_accepts_real_models_and_refuses_broken_structure(int8_tflite):
    directory, manifest = int8_tflite
    for entry in manifest["artifacts"].values():
        check_tflite((directory / entry["file"]).read_bytes(), entry["file"])
    data = bytearray((directory / "lightweight.tflite").read_bytes())
    root = int.from_bytes(data[:4], "little")
    bad_root = bytes(data)
    bad_root = (len(data) + 100).to_bytes(4, "little") + bad_root[4:]
    for broken, why in [(bad_root, "outside the file"), (bytes(data[:len(data) // 3]), "outside the file|past the end"),
                        (b"\x00" * 64, "TFL3"), (bytes(data[:4]) + b"XXXX" + bytes(data[8:]), "TFL3")]:
        with pytest.raises(ModelCheckError, match=why):
            check_tflite(broken, "m.tflite")
    assert root < len(data)


def test_android_assets_refuse_a_per_tensor_table(export_copy, tmp_path, capsys):
    """Per-tensor patches are ONNX's; the Android core writes per-channel scales, so a TFLite
    table that claims one (valid for synthesize()) is refused before anything is written."""
    table = json.loads((export_copy / "specialist_patches.json").read_text())
    table[0].update(per_tensor=True, bias_offset=-1, bias_scale_offset=-1)
    _forge(export_copy, "specialist_patches.json", json.dumps(table).encode(), "patch_table_sha256")
    out = tmp_path / "assets"
    err = _cli_error(["android-assets", str(export_copy), "--out", str(out)], capsys)
    assert "per tensor" in err and "Traceback" not in err
    assert not out.exists()


def _escape(directory, name, tmp_path):
    """``name`` moved out of the export and replaced by a symlink to it (same bytes)."""
    outside = tmp_path / f"outside-{name}"
    (directory / name).rename(outside)
    (directory / name).symlink_to(outside)


def _tamper(directory, name, tmp_path):
    data = bytearray((directory / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (directory / name).write_bytes(bytes(data))


def _presynth_entry(directory):
    m = load_manifest(directory)
    return m.artifacts[next(r for r in m.artifacts if r.value == "specialist_presynth")]


def _compact_bases(directory, tmp_path):
    from basisnet_deploy.runtime.deployment import Deployment

    Deployment(directory).compact_bases()


def _android(directory, tmp_path):
    from basisnet_deploy.export.android import android_assets

    android_assets(directory, tmp_path / "assets")


# Each reader of an export's files, and a file it reads that no earlier check covers.
READERS = {
    "load_presynth template": (lambda d, t: load_presynth(d, _presynth_entry(d)), "specialist_presynth.tflite"),
    "load_presynth bases": (lambda d, t: load_presynth(d, _presynth_entry(d)), "specialist_bases.npz"),
    "load_presynth table": (lambda d, t: load_presynth(d, _presynth_entry(d)), "specialist_patches.json"),
    "check_files": (lambda d, t: check_files(d, load_manifest(d)), "lightweight.tflite"),
    "deployment compact bases": (_compact_bases, "specialist_bases_int8.npz"),
    "android-assets int8 bases": (_android, "specialist_bases_int8.npz"),
}


@pytest.mark.parametrize("damage", ["escape", "tamper"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_refuses_an_escaping_symlink_and_a_tampered_file(export_copy, tmp_path,
                                                                      reader, damage):
    read, name = READERS[reader]
    {"escape": _escape, "tamper": _tamper}[damage](export_copy, name, tmp_path)
    expected = "outside the export directory" if damage == "escape" else "sha256 differs"
    with pytest.raises(UserError, match=expected) as e:
        read(export_copy, tmp_path)
    assert name in str(e.value)
    assert not (tmp_path / "assets").exists()


def test_a_manifest_symlink_that_leaves_the_export_is_refused(export_copy, tmp_path):
    _escape(export_copy, "manifest.json", tmp_path)
    with pytest.raises(UserError, match="outside the export directory"):
        load_manifest(export_copy)


def test_read_verified_checks_place_size_and_digest(tmp_path):
    from basisnet_deploy.common.files import read_verified, sha256_hex

    d = tmp_path / "ex"
    d.mkdir()
    (d / "a.bin").write_bytes(b"abc")
    (d / "link.bin").symlink_to(d / "a.bin")  # a link that stays inside is fine
    digest = sha256_hex(b"abc")
    assert read_verified(d, "a.bin", digest, 3) == b"abc"
    assert read_verified(d, "link.bin", digest, 3) == b"abc"
    with pytest.raises(UserError, match="3 bytes, sha256 differs.*4 bytes expected"):
        read_verified(d, "a.bin", digest, 4)
    with pytest.raises(UserError, match="sha256 differs"):
        read_verified(d, "a.bin", sha256_hex(b"abd"))
    with pytest.raises(UserError, match="missing"):
        read_verified(d, "b.bin")
    with pytest.raises(UserError, match="outside the export directory"):
        read_verified(d, "../ex/../secret")
    (tmp_path / "secret").write_bytes(b"abc")
    (d / "out.bin").symlink_to(tmp_path / "secret")
    with pytest.raises(UserError, match="outside the export directory"):
        read_verified(d, "out.bin", digest, 3)
