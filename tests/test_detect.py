"""Scores and learned thresholds on seeded streams."""

from __future__ import annotations

import numpy as np

from stream.detect import distribution_test, js_divergence, volume_test


def hist(rng: np.random.Generator, n: int, shift: float = 0.0, bins: int = 20) -> np.ndarray:
    x = np.clip(rng.beta(2, 5, n) + shift, 0, 0.9999)
    return np.bincount((x * bins).astype(int), minlength=bins)


def test_false_breach_rate_under_no_change_is_within_alpha() -> None:
    rng = np.random.default_rng(11)
    alpha, trials = 0.01, 600
    breaches = 0
    for _ in range(trials):
        base = np.stack([hist(rng, int(rng.integers(100, 2000))) for _ in range(8)])
        breaches += distribution_test(hist(rng, int(rng.integers(30, 3000))), base, alpha).breach
    assert breaches / trials <= 2 * alpha


def test_threshold_shrinks_with_sample_size() -> None:
    rng = np.random.default_rng(3)
    base = np.stack([hist(rng, 1000) for _ in range(8)])
    small = distribution_test(hist(rng, 50), base, 1e-4).threshold
    large = distribution_test(hist(rng, 50_000), base, 1e-4).threshold
    assert large < small / 5


def test_overdispersed_baseline_raises_the_threshold() -> None:
    rng = np.random.default_rng(5)
    calm = np.stack([hist(rng, 2000) for _ in range(8)])
    noisy = np.stack([hist(rng, 2000, shift=float(s)) for s in rng.normal(0, 0.05, 8)])
    cur = hist(rng, 2000)
    assert distribution_test(cur, noisy, 1e-4).threshold > 2 * distribution_test(cur, calm, 1e-4).threshold


def test_first_detected_window_of_an_abrupt_shift() -> None:
    """Seeded stream: 30 windows of 300 events, shift of half a standard deviation from window 20."""
    rng = np.random.default_rng(2026)
    sd = np.sqrt(2 * 5 / (7**2 * 8))  # standard deviation of Beta(2, 5)
    windows = [hist(rng, 300, shift=0.5 * sd if i >= 20 else 0.0) for i in range(30)]
    detected = [i for i in range(8, 30) if distribution_test(windows[i], np.stack(windows[i - 8:i]) if i < 20 else np.stack(windows[12:20]), 1e-4).breach]
    assert detected[0] == 20
    assert all(i >= 20 for i in detected)


def test_js_divergence_bounds() -> None:
    assert js_divergence([5, 5], [5, 5]) == 0.0
    assert js_divergence([1, 0, 0], [0, 0, 1]) == 1.0
    assert 0 < js_divergence([3, 1], [1, 3]) < 1


def test_volume_drop_of_80_percent_breaches_normal_wobble_does_not() -> None:
    base = [1000, 1100, 950, 1020, 980, 1060, 990, 1010]
    assert not volume_test(900, base, 1e-4).breach
    assert volume_test(200, base, 1e-4).breach
    # Small counts: Poisson noise sets the floor, so 3 instead of 6 is no alarm.
    assert not volume_test(3, [6, 5, 7, 6, 4, 6, 5, 8], 1e-4).breach
