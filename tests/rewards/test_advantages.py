"""GRPO group advantages against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ladder_jax.rewards import group_advantages


def test_group_advantages_hand_computed():
    # Group 1 [1, 0, 0]: mean 1/3, Bessel std sqrt(((2/3)^2 + 2 (1/3)^2) / 2) = sqrt(1/3).
    # Group 2 [1, 2, 2]: mean 5/3, deviations -2/3, 1/3, 1/3, same std.
    # Group 3 [2, 2, 2]: std 0 -> all zero.
    s = math.sqrt(1 / 3) + 1e-4
    expected = [(2 / 3) / s, (-1 / 3) / s, (-1 / 3) / s,
                (-2 / 3) / s, (1 / 3) / s, (1 / 3) / s,
                0.0, 0.0, 0.0]
    got = group_advantages(jnp.array([1.0, 0, 0, 1, 2, 2, 2, 2, 2]), group_size=3)
    assert got.shape == (9,)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6, atol=1e-7)


def test_group_of_two():
    # [0, 1.6]: mean 0.8, Bessel std sqrt(2 * 0.8^2 / 1) = 0.8 * sqrt(2).
    s = 0.8 * math.sqrt(2) + 1e-4
    got = group_advantages(jnp.array([0.0, 1.6]), group_size=2)
    np.testing.assert_allclose(np.asarray(got), [-0.8 / s, 0.8 / s], rtol=1e-6)


def test_jit_and_float64():
    with jax.enable_x64(True):
        r = jnp.array([0.0, 2.0, 1.0, 1.0], jnp.float64)
        got = jax.jit(group_advantages, static_argnums=1)(r, 4)
        assert got.dtype == jnp.float64
        # mean 1, Bessel std sqrt((1 + 1 + 0 + 0) / 3)
        s = math.sqrt(2 / 3) + 1e-4
        np.testing.assert_allclose(np.asarray(got), [-1 / s, 1 / s, 0, 0], rtol=1e-12)


@pytest.mark.parametrize("rewards,g,message", [
    (jnp.zeros(4), 1, "group_size must be >= 2"),
    (jnp.zeros(5), 2, "do not split into groups of 2"),
    (jnp.zeros((2, 2)), 2, "must be 1-D"),
])
def test_bad_inputs(rewards, g, message):
    with pytest.raises(ValueError, match=message):
        group_advantages(rewards, g)
