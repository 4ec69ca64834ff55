"""Stage 2, what an export holds: the manifest and pre-synthesis (NumPy and Pillow only)."""
