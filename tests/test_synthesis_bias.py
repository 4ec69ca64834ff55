"""synthesize() never clips: a channel whose synthesized kernel is ~0 keeps its real bias."""

import numpy as np

from basisnet_deploy.synthesis import Patch, synthesize


def test_near_zero_channel_keeps_its_bias():
    w = np.zeros((2, 2, 1, 1, 1), np.float32)  # [K, O, H, W, I]: channel 1 all zero
    w[:, 0] = 0.5
    bias = np.array([0.1, 5.0], np.float32)
    p = Patch("l", 0, "conv", (2, 1, 1, 1), "int8", 0, scale_offset=2, bias_offset=10,
              bias_scale_offset=18, input_scale=0.02)
    out = synthesize(bytes(26), [p], {"l": w, "l/bias": bias}, np.array([[0.5, 0.5]], np.float32))
    q = np.frombuffer(out[2:10], "<f4")
    bias_q, bias_scale = np.frombuffer(out[10:18], "<i4"), np.frombuffer(out[18:26], "<f4")
    assert np.abs(bias_q.astype(np.float64)).max() < 2**31 - 1
    np.testing.assert_allclose(bias_q * bias_scale, bias, rtol=1e-6)
    np.testing.assert_allclose(bias_scale, np.float32(0.02) * q, rtol=1e-6)
    assert q[0] == np.float32(0.5 / 127)  # a normal channel's scale is unchanged: max|w| / 127
