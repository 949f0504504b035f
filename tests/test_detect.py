"""Scores and learned thresholds on seeded streams, with baselines learned the way the engine learns them."""

from __future__ import annotations

import numpy as np
import pytest

from stream.baseline import Baseline, Window
from stream.detect import distribution_test, js_divergence, mean_shift_test
from stream.store import SeriesStore
from stream.volume import pooled_rate_variance, volume_test, volume_tests

KEY = ("how", 0, 9)


def hist(rng: np.random.Generator, n: int, shift: float = 0.0, bins: int = 20) -> np.ndarray:
    x = np.clip(rng.beta(2, 5, n) + shift, 0, 0.9999)
    return np.bincount((x * bins).astype(int), minlength=bins)


def learned(windows: list[np.ndarray] | list[int], k: int = 8) -> Baseline:
    """The baseline a slot has after these windows (histograms, or bare counts) were folded in."""
    store = SeriesStore(k)
    for i, w in enumerate(windows):
        if isinstance(w, int | np.integer):
            store.fold(0, (KEY,), Window(i, int(w), None), usable=False)
        else:
            store.fold(0, (KEY,), Window(i, int(w.sum()), w, float(w.sum()), float(w.sum())), usable=True)
    b = store.baseline(0, (KEY,), usable=not isinstance(windows[0], int), min_windows=2)
    assert b is not None
    return b


def js_test(cur: np.ndarray, b: Baseline, alpha: float):  # type: ignore[no-untyped-def]
    return distribution_test(cur, b.hist, b.windows, b.dispersion, b.ratios, alpha)


def test_false_breach_rate_under_no_change_is_within_alpha() -> None:
    rng = np.random.default_rng(11)
    alpha, trials = 0.01, 600
    breaches = 0
    for _ in range(trials):
        b = learned([hist(rng, int(rng.integers(100, 2000))) for _ in range(8)])
        breaches += js_test(hist(rng, int(rng.integers(30, 3000))), b, alpha).breach
    assert breaches / trials <= 2 * alpha


def test_threshold_shrinks_with_sample_size() -> None:
    rng = np.random.default_rng(3)
    b = learned([hist(rng, 1000) for _ in range(8)])
    small = js_test(hist(rng, 50), b, 1e-4).threshold
    large = js_test(hist(rng, 50_000), b, 1e-4).threshold
    assert large < small / 5


def test_overdispersed_baseline_raises_the_threshold() -> None:
    rng = np.random.default_rng(5)
    calm = learned([hist(rng, 2000) for _ in range(8)])
    noisy = learned([hist(rng, 2000, shift=float(s)) for s in rng.normal(0, 0.05, 8)])
    cur = hist(rng, 2000)
    assert noisy.dispersion > 2 * max(calm.dispersion, 1.0)
    assert js_test(cur, noisy, 1e-4).threshold > 2 * js_test(cur, calm, 1e-4).threshold


def test_first_detected_window_of_an_abrupt_shift() -> None:
    """Seeded stream: 30 windows of 300 events, shift of half a standard deviation from window 20;
    every window is tested against the slot, then folded in unless it breached (as the engine does)."""
    rng = np.random.default_rng(2026)
    sd = np.sqrt(2 * 5 / (7**2 * 8))  # standard deviation of Beta(2, 5)
    store = SeriesStore(8)
    detected = []
    for i in range(30):
        w = hist(rng, 300, shift=0.5 * sd if i >= 20 else 0.0)
        b = store.baseline(0, (KEY,), usable=True, min_windows=3)
        if b is not None and js_test(w, b, 1e-4).breach:
            detected.append(i)
            continue
        store.fold(0, (KEY,), Window(i, 300, w, 0.0, 0.0), usable=True)
    assert detected[0] == 20
    assert all(i >= 20 for i in detected)


def test_js_divergence_bounds() -> None:
    assert js_divergence([5, 5], [5, 5]) == 0.0
    assert js_divergence([1, 0, 0], [0, 0, 1]) == 1.0
    assert 0 < js_divergence([3, 1], [1, 3]) < 1


def test_volume_drop_of_80_percent_breaches_normal_wobble_does_not() -> None:
    b = learned([1000, 1100, 950, 1020, 980, 1060, 990, 1010])
    vol = lambda c: volume_test(c, b.log_center, b.log_spread, b.windows, 1e-4)  # noqa: E731
    assert not vol(900).breach
    assert vol(200).breach
    # Small counts: Poisson noise sets the floor, so 3 instead of 6 is no alarm.
    small = learned([6, 5, 7, 6, 4, 6, 5, 8])
    assert not volume_test(3, small.log_center, small.log_spread, small.windows, 1e-4).breach


@pytest.mark.parametrize(("rate", "wobble"), [(1.0, 0.4), (6.0, 0.0), (6.0, 0.2), (20.0, 0.2), (20.0, 0.4)])
def test_the_volume_test_keeps_its_alpha_on_small_and_wobbling_series(rate: float, wobble: float) -> None:
    """Counts Poisson at a rate that varies from week to week (log-normal): a fresh window of the
    same slot breaches about alpha of the time at most, also at a few events a window (a normal
    approximation on log counts made a quiet hour of 1 where 6 are usual a 4 sd event) and when
    the eight baseline windows came out quiet by chance (the series then borrows the spread its
    model's other series show in the slot)."""
    rng = np.random.default_rng(5)
    n, k, alpha = 100_000, 8, 1e-3
    counts = rng.poisson(np.exp(np.log(rate) + wobble * rng.standard_normal((n, k + 1))))
    logs = np.log1p(counts[:, :k])
    centre, spread, windows = logs.mean(axis=1), logs.var(axis=1), np.full(n, k)
    pooled = pooled_rate_variance(centre, spread, windows)  # the model's other series, the same slot
    score, threshold, _ = volume_tests(counts[:, k], centre, spread, windows, alpha, pooled)
    assert (score > threshold).mean() <= 2 * alpha


def test_the_volume_test_finds_a_small_series_gone_quiet_or_loud() -> None:
    """About 30 events a window, weeks 10% apart: one event, or ten times as many, is a breach
    against nine baselines in ten at alpha 1e-3 (eight windows leave the week-to-week spread
    uncertain, and the test pays for that)."""
    rng = np.random.default_rng(6)
    n, k = 10_000, 8
    counts = rng.poisson(np.exp(np.log(30.0) + 0.1 * rng.standard_normal((n, k))))
    logs = np.log1p(counts)
    for fresh in (1, 300):
        score, threshold, _ = volume_tests(np.full(n, fresh), logs.mean(axis=1), logs.var(axis=1), np.full(n, k), 1e-3)
        assert (score > threshold).mean() > 0.9


def test_running_slot_statistics_match_the_plain_ones_within_k_windows() -> None:
    """Until k windows were seen, the running mean and variance are the exact ones."""
    rng = np.random.default_rng(8)
    counts = [int(c) for c in rng.integers(200, 400, 6)]
    b = learned(counts)
    logs = np.log1p(counts)
    assert b.windows == 6
    assert b.log_center == pytest.approx(logs.mean(), rel=1e-6)
    assert b.log_spread == pytest.approx(logs.var(), rel=1e-4)
    assert b.inv_count == pytest.approx(np.mean(1 / np.array(counts)), rel=1e-5)


def test_mean_shift_from_learned_slot() -> None:
    rng = np.random.default_rng(4)
    store = SeriesStore(8)
    for i in range(8):
        x = rng.normal(0.3, 0.2, 500)
        h = np.bincount(np.clip((x * 10).astype(int), 0, 9), minlength=10)
        store.fold(0, (KEY,), Window(i, 500, h, float(x.sum()), float((x * x).sum())), usable=True)
    b = store.baseline(0, (KEY,), usable=True, min_windows=3)
    assert b is not None
    for mu, breach in ((0.3, False), (0.36, True)):
        x = rng.normal(mu, 0.2, 500)
        v = mean_shift_test(500, float(x.sum()), float((x * x).sum()), b.center, b.spread, b.sampling, b.within, b.windows, 1e-4)
        assert v.breach is breach
