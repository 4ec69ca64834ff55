import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from basisnet_deploy.config import ArchConfig  # noqa: E402

# Small enough to build in a second and train for a few seconds on 2 cores.
TINY = ArchConfig(bases=3, nonshared=(8, 15), width=0.35, resolution=32, light_width=0.35,
                  light_resolution=16, num_classes=10, bn_momentum=0.9)


@pytest.fixture
def tiny():
    return TINY
