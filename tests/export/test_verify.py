"""The fp32 parity bound: a fixed tolerance plus the model's own float32 noise (torch fp32 vs float64)."""

import numpy as np

from rnnedge.export.verify import _violation


def test_bound_grows_with_magnitude_and_with_the_models_own_noise():
    b = np.array([[0.5, -0.25, 0.75]])
    off = b + np.array([[0.0, 5e-5, 0.0]])
    assert _violation(b + 1e-6, b, 1e-5) <= 1.0  # well inside 1e-5 * (1 + 0.4 * 0.75)
    assert _violation(off, b, 1e-5) > 1.0  # 5e-5 is off for a vector of magnitude 0.75 ...
    noise = np.array([[0.0, 2e-5, 1e-6]])  # ... unless torch fp32 itself is 2e-5 from float64 there
    assert _violation(off, b, 1e-5, noise=noise) <= 1.0
    assert _violation(b + 1e-3, b, 1e-5, noise=noise) > 1.0  # a conversion error is still caught
    big = np.array([[700.0, 1.0]])
    assert _violation(big + np.array([[1e-3, 0.0]]), big, 1e-5) <= 1.0  # 2.8e-3 allowed at magnitude 700
    assert _violation(np.array([[np.nan, 1.0]]), big, 1e-5, noise=np.ones((1, 2))) == float("inf")


def test_state_parts_get_their_own_magnitude():
    h_and_c = np.array([[0.1, 0.2, 500.0, -300.0]])  # parts (h, c): h must not inherit c's magnitude
    assert _violation(h_and_c + np.array([[1e-3, 0, 0, 0]]), h_and_c, 1e-5, parts=2) > 1.0
    assert _violation(h_and_c + np.array([[0, 0, 1e-3, 0]]), h_and_c, 1e-5, parts=2) <= 1.0


def test_a_forecast_is_held_to_its_channels_level_not_its_own_size():
    # std * z + mean with mean 1,351, std 1,479: a forecast near 0 rounds like the terms summed, not the sum
    near_zero = np.array([[2.0]])
    levels = np.array([1351.0 + 1479.0])
    assert _violation(near_zero + 1.5e-3, near_zero, 1e-5) > 1.0  # the measured Lynx gap, sized by 2.0 alone
    assert _violation(near_zero + 1.5e-3, near_zero, 1e-5, levels=levels) <= 1.0
    assert _violation(near_zero + 1.0, near_zero, 1e-5, levels=levels) > 1.0  # a conversion error is still caught
