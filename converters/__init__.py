"""Exporters: one module per target (TFLite/LiteRT, ONNX) behind one small interface
(base.py), each described by its :class:`~basisnet_deploy.targets.registry.Target`.

Installed as ``basisnet_deploy.converters`` (pyproject.toml maps this folder into the package
namespace), so no generic top-level ``converters`` module lands in site-packages.
"""

from basisnet_deploy.targets import registry


def get_exporter(target: str, **options):
    """The exporter of the registered target named ``target``."""
    return registry.get(target).exporter(**options)
