"""Stage 5, what a deployment costs and gains: bench, early-exit threshold calibration."""
