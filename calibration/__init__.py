"""Calibration data for int8 quantization, as a plain reader protocol.

Installed as ``basisnet_deploy.calibration`` (pyproject.toml maps this folder into the package
namespace), so no generic top-level ``calibration`` module lands in site-packages.
"""
