"""Exporters: one module per target (TFLite/LiteRT, ONNX) behind one small interface.

Installed as ``basisnet_deploy.converters`` (pyproject.toml maps this folder into the package
namespace), so no generic top-level ``converters`` module lands in site-packages.
"""
