"""Training a BasisNet on digits or an image folder (TensorFlow)."""
