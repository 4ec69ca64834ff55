"""Exporters: one module per target (TFLite/LiteRT, ONNX) behind one small interface.

Installed as ``basisnet_deploy.converters`` (pyproject.toml maps this folder into the package
namespace), so no generic top-level ``converters`` module lands in site-packages.
"""

from basisnet_deploy.common.errors import UserError

TARGETS = ("tflite", "onnx")


def get_exporter(target: str, **options):
    """The exporter for ``target``: ``tflite`` (LiteRT) or ``onnx``."""
    if target == "tflite":
        from basisnet_deploy.converters.tflite import TFLiteExporter

        return TFLiteExporter(**options)
    if target == "onnx":
        from basisnet_deploy.converters.onnx import OnnxExporter

        return OnnxExporter(**options)
    raise UserError(f"--target: unknown {target!r}; choose one of {list(TARGETS)}")
