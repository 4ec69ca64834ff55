"""An export directory as the runner sees it: manifest, artifact paths, preprocessing.

No TensorFlow here: a deployment runs on LiteRT / onnxruntime and NumPy alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from basisnet_deploy.data.preprocessing import decode_side, preprocess
from basisnet_deploy.common.files import inside, read_verified
from basisnet_deploy.artifacts.synthesis import Presynth, load_presynth
from basisnet_deploy.artifacts.manifest import (MANIFEST_FILE, Artifact, Manifest, PipelineCost, Role,
                                                check_files, load_manifest)


def specialist_role(form: str) -> Role:
    """The artifact the specialist stage runs in ``form`` (presynth: the template)."""
    return Role.SPECIALIST_COEFFICIENT if form == "coefficient" else Role.SPECIALIST_PRESYNTH


class Deployment:
    def __init__(self, directory):
        self.directory = Path(directory)
        self.manifest: Manifest = load_manifest(self.directory)
        self._models = check_files(self.directory, self.manifest)
        self.preprocessing = self.manifest.preprocessing
        self.light_resolution = self.manifest.light_resolution
        self.resolution = self.manifest.resolution
        self.labels = list(self.manifest.labels)
        self.threshold = self.manifest.threshold
        self._presynth = None

    @property
    def artifacts(self) -> dict[Role, Artifact]:
        return self.manifest.artifacts

    def path(self, role: Role | str) -> Path:
        """The artifact's file, refused if its name leads outside the export: a name for
        messages. Sessions load :meth:`model`, the bytes that were checked, not this file."""
        return inside(self.directory, self.manifest.artifact(role, self.directory).file)

    def model(self, role: Role | str) -> bytes:
        """The artifact's bytes as read and checked against the manifest's sha256 when this
        deployment was opened."""
        return self._models[self.manifest.artifact(role, self.directory).role]

    def session(self, factory, role: Role | str):
        """A session of ``factory`` (a backend factory, runtime/backends.py) on the checked
        bytes of the artifact ``role``."""
        return factory(self.path(role), self.model(role))

    def specialist_path(self, form: str) -> Path:
        """The artifact the specialist stage runs in ``form`` (presynth: the template)."""
        return self.path(specialist_role(form))

    def specialist_model(self, form: str) -> bytes:
        """The checked bytes of :meth:`specialist_path`."""
        return self.model(specialist_role(form))

    def presynth(self) -> Presynth:
        if self._presynth is None:
            entry = self.manifest.artifact(Role.SPECIALIST_PRESYNTH, self.directory)
            self._presynth = load_presynth(self.directory, entry, self.model(Role.SPECIALIST_PRESYNTH))
        return self._presynth

    def compact_bases(self) -> dict:
        """The int8 (compact) bases of the pre-synthesized specialist, sha256-checked."""
        from basisnet_deploy.artifacts import compact_bases

        entry = self.manifest.artifact(Role.SPECIALIST_PRESYNTH, self.directory).presynth
        data = read_verified(self.directory, entry.bases_int8, entry.bases_int8_sha256,
                             what="int8 bases")
        return compact_bases.load(self.directory / entry.bases_int8, self.presynth().table, data)

    @property
    def decode_side(self) -> int:
        """The short side ``load_image`` keeps for this export's resolutions."""
        return decode_side(self.preprocessing, self.resolution, self.light_resolution)

    def frame(self, image) -> tuple[np.ndarray, np.ndarray]:
        """A PIL image -> (lightweight input, specialist input), each [1, r, r, 3]."""
        return (preprocess(image, self.light_resolution, self.preprocessing)[None],
                preprocess(image, self.resolution, self.preprocessing)[None])

    def cost(self) -> PipelineCost:
        """The manifest's cost model, per stage and for the whole pipeline."""
        return PipelineCost.from_json(self.manifest.cost, f"{self.directory / MANIFEST_FILE}")
