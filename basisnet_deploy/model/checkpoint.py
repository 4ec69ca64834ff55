"""The checkpoint directory that ``train`` writes and ``export``/``cost`` read.

Layout::

    ckpt/
      config.json                   architecture, preprocessing, labels, schema_version
      model.index                   tf.train.Checkpoint of every weight of both stages,
      model.data-00000-of-00001     keyed by its Keras path (e.g. "sp_L8_expand/kernel")

Loading validates before it assigns: every variable the config implies must be in the file
with the right shape, and the file may hold no others. Every problem is a
:class:`CheckpointError` with one line that names the file and the fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from typing import TYPE_CHECKING

from basisnet_deploy.common.files import staged_directory
from basisnet_deploy.model.config import BasisNetConfig, ConfigError
from basisnet_deploy.common.errors import UserError, first_line

if TYPE_CHECKING:  # TensorFlow is imported on use, so reading config.json stays fast
    from basisnet_deploy.model.network import BasisNet

CONFIG_FILE = "config.json"
PREFIX = "model"


class CheckpointError(UserError):
    pass


def _key(path: str) -> str:
    # tf.train.Checkpoint escapes '.' as '..' and '/' as '.S' in dict keys.
    return "weights/" + path.replace(".", "..").replace("/", ".S") + "/.ATTRIBUTES/VARIABLE_VALUE"


def legacy_checkpoint(directory: Path) -> bool:
    """A checkpoint written before output markers: our config.json and weight index."""
    try:
        data = json.loads((directory / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(data, dict) and "schema_version" in data and "architecture" in data
            and (directory / f"{PREFIX}.index").is_file())


def save(directory: str | os.PathLike, net: "BasisNet", config: BasisNetConfig) -> Path:
    """Write ``config.json`` and the weights into ``directory``, atomically.

    Everything is written into a temporary sibling directory first and renamed into place
    (:func:`staged_directory`), so an interrupted save never leaves a half-written checkpoint.
    """
    import tensorflow as tf

    config.validate()
    directory = Path(directory)
    with staged_directory(directory, "checkpoint", legacy=legacy_checkpoint) as tmp:
        tf.train.Checkpoint(weights={w.path: w for w in net.weights}).write(str(tmp / PREFIX))
        (tmp / CONFIG_FILE).write_text(json.dumps(config.to_json(), indent=2) + "\n")
    return directory


def load_config(directory: str | os.PathLike) -> BasisNetConfig:
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory; pass the directory "
                              "that 'basisnet-deploy train --out' wrote")
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a checkpoint directory holds {CONFIG_FILE} "
                              f"and {PREFIX}.index")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: "
                              f"{e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read ({e})") from None
    return BasisNetConfig.from_json(data, where=str(path))


def load(directory: str | os.PathLike) -> tuple["BasisNet", BasisNetConfig]:
    """Build the BasisNet that ``config.json`` describes and restore its weights."""
    import tensorflow as tf

    from basisnet_deploy.model.network import BasisNet

    directory = Path(directory)
    config = load_config(directory)
    prefix = directory / PREFIX
    if not Path(f"{prefix}.index").is_file():
        raise CheckpointError(f"{prefix}.index: missing; the checkpoint has no weights "
                              "(was training interrupted?)")
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        shapes = reader.get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as e:
        raise CheckpointError(f"{prefix}.index: cannot read the checkpoint "
                              f"({type(e).__name__}: {first_line(e)})") from None
    net = BasisNet(config.architecture)
    expected = {_key(w.path): w for w in net.weights}
    for key, var in expected.items():
        if key not in shapes:
            raise CheckpointError(f"{prefix}: variable {var.path!r} is missing; the checkpoint "
                                  f"does not match {directory / CONFIG_FILE}")
        if list(shapes[key]) != list(var.shape):
            raise CheckpointError(
                f"{prefix}: variable {var.path!r} has shape {list(shapes[key])} in the "
                f"checkpoint, but {directory / CONFIG_FILE} implies {list(var.shape)}")
    extra = sorted(k for k in shapes if k.startswith("weights/") and k not in expected)
    if extra:
        raise CheckpointError(f"{prefix}: holds variable {extra[0]!r} that "
                              f"{directory / CONFIG_FILE} does not define")
    try:
        for key, var in expected.items():
            var.assign(reader.get_tensor(key))
    except (tf.errors.OpError, IndexError, ValueError) as e:  # IndexError: truncated data
        raise CheckpointError(f"{prefix}.data-*: corrupt or truncated checkpoint data "
                              f"({type(e).__name__}: {first_line(e)})") from None
    return net, config


__all__ = ["CheckpointError", "ConfigError", "load", "load_config", "save"]
