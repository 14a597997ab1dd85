"""Statistics of the output dither (``quant.hash_uniform``, ``quant.dither_quantize``): uniform,
independent of its neighbours, and unbiased rounding, each over 10^6 draws.

References: the chi-square test of a uniform histogram (scipy), the standard error of a sample
correlation of independent draws (1/sqrt(n)), and stochastic rounding's expectation (E[q] = x).
"""

import math

import numpy as np
import pytest
import scipy.stats
import torch

from optopass.passes.optical import quant

N = 1 << 20


def _draws(key: int, shape=(N,)) -> torch.Tensor:
    return quant.hash_uniform(torch.Size(shape), torch.tensor(key), torch.device("cpu"))


@pytest.mark.parametrize("key", [0, 1, 0x9E3779B9, 2**32 - 1])
def test_draws_are_uniform(key):
    u = _draws(key).numpy()
    assert u.min() >= 0 and u.max() < 1
    observed = np.bincount((u * 256).astype(int), minlength=256)
    assert scipy.stats.chisquare(observed).pvalue > 1e-4


@pytest.mark.parametrize("lag", [1, 2, 64, 768])
def test_neighbours_are_uncorrelated(lag):
    """Lags 1-2 are adjacent elements; 64 and 768 the next row of a head or of a hidden vector."""
    u = _draws(7).double()
    a, b = u[:-lag] - 0.5, u[lag:] - 0.5
    corr = (a * b).mean() / (a.square().mean() * b.square().mean()).sqrt()
    assert abs(corr.item()) < 5 / math.sqrt(N)


def test_consecutive_keys_are_uncorrelated():
    """A site's next call (its counter + 1) draws a fresh stream, element by element."""
    base = quant.stream_base(torch.tensor(0), 3)
    u0 = quant.hash_uniform(torch.Size((N,)), quant.key_at(base, torch.tensor(10)), torch.device("cpu")).double() - 0.5
    u1 = quant.hash_uniform(torch.Size((N,)), quant.key_at(base, torch.tensor(11)), torch.device("cpu")).double() - 0.5
    assert abs((u0 * u1).mean().item() * 12) < 5 / math.sqrt(N)


def test_mean_rounding_error_is_under_a_thousandth_of_a_step():
    """Stochastic rounding is unbiased: over 10^6 values spread across the grid, the mean of
    (dithered value - value) is under 1e-3 of a step (its standard error is about 3e-4)."""
    levels, lo, hi = 256, -1.0, 1.0
    step = (hi - lo) / (levels - 1)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(N, generator=gen) * (hi - lo - 2 * step) + lo + step  # inside the range
    q = quant.dither_quantize(x, torch.tensor([lo, hi]), levels, _draws(12345))
    errors = (q.double() - x.double()) / step
    assert errors.abs().max().item() <= 1.0 + 1e-5  # one of the two neighbouring levels
    assert abs(errors.mean().item()) < 1e-3
    # plain rounding of the same values would leave |error| <= 1/2; the dither's variance is that
    # of stochastic rounding, E[f (1 - f)] = 1/6 for a uniform fractional part f
    assert errors.var().item() == pytest.approx(1 / 6, abs=5e-3)
