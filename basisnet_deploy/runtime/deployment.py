"""An export directory as the runner sees it: manifest, artifact paths, preprocessing.

No TensorFlow here: a deployment runs on LiteRT / onnxruntime and NumPy alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from basisnet_deploy.data import preprocess
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.artifacts.synthesis import Presynth, load_presynth
from basisnet_deploy.artifacts.manifest import check_files, load_manifest, manifest_preprocessing


class Deployment:
    def __init__(self, directory):
        self.directory = Path(directory)
        self.manifest = load_manifest(self.directory)
        check_files(self.directory, self.manifest)
        m = self.manifest
        p = m["preprocessing"]
        self.preprocessing = manifest_preprocessing(m)
        self.light_resolution = p["lightweight_resolution"]
        self.resolution = p["specialist_resolution"]
        self.labels = m["labels"]
        self.threshold = m.get("early_exit", {}).get("threshold")
        self._presynth = None

    @property
    def artifacts(self) -> dict:
        return self.manifest["artifacts"]

    def path(self, role: str) -> Path:
        if role not in self.artifacts:
            raise UserError(f"{self.directory}: the export has no {role} artifact "
                            f"(it has {sorted(self.artifacts)}); re-export with it")
        return self.directory / self.artifacts[role]["file"]

    def presynth(self) -> Presynth:
        if self._presynth is None:
            entry = self.artifacts.get("specialist_presynth")
            if entry is None:
                raise UserError(f"{self.directory}: no pre-synthesized specialist in this export")
            self._presynth = load_presynth(self.directory, entry)
        return self._presynth

    def frame(self, image) -> tuple[np.ndarray, np.ndarray]:
        """A PIL image -> (lightweight input, specialist input), each [1, r, r, 3]."""
        return (preprocess(image, self.light_resolution, self.preprocessing)[None],
                preprocess(image, self.resolution, self.preprocessing)[None])

    def cost(self) -> dict:
        return self.manifest["cost"]
