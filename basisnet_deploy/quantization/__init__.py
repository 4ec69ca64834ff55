"""Quantization tuning: weights learned so that their int8 rounding keeps the float model's
answers (weight_tuning.py, TensorFlow), configured by the plain data in settings.py."""
