"""Page-Hinkley in units of the residual's own spread: false alarms within the budget on healthy
residuals of every kind a real series has, and detections at pinned windows on seeded streams."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from stream import residual
from stream.residual import ResidualDetectors, restored, step, threshold

Gen = Callable[[np.random.Generator, int, int], np.ndarray]


def ar1(rho: float, scale: float = 1.0, t3: bool = False) -> Gen:
    """Healthy residuals: AR(1) with unit (or ``scale``) marginal spread, normal or t(3) shocks."""

    def gen(rng: np.random.Generator, series: int, windows: int) -> np.ndarray:
        e = rng.standard_t(3, (series, windows)) / np.sqrt(3.0) if t3 else rng.normal(0, 1, (series, windows))
        z = np.empty((series, windows))
        z[:, 0] = e[:, 0]
        for t in range(1, windows):
            z[:, t] = rho * z[:, t - 1] + np.sqrt(1 - rho * rho) * e[:, t]
        return scale * z

    return gen


def alarm_rate(gen: Gen, alpha: float, series: int = 200, windows: int = 2000, seed: int = 0) -> float:
    z = gen(np.random.default_rng(seed), series, windows)
    state = np.tile(np.asarray(residual.START), (series, 1))
    hits = sum(int(step(state, z[:, t], alpha).sum()) for t in range(windows))
    return hits / (series * (windows - residual.WARMUP))


@pytest.mark.parametrize(("name", "gen"), [
    ("independent", ar1(0.0)),
    ("heavy-tailed t(3), spread 1.7", ar1(0.0, np.sqrt(3.0), t3=True)),
    ("AR(1) rho 0.5", ar1(0.5)),
    ("AR(1) rho 0.8", ar1(0.8)),
    ("AR(1) rho 0.8, spread 0.3", ar1(0.8, 0.3)),
    ("AR(1) rho 0.95", ar1(0.95)),
])
def test_healthy_residuals_alarm_within_the_budget(name: str, gen: Gen) -> None:
    # 400,000 series-windows: about 400 alarms if the detector spent exactly its alpha
    rate = alarm_rate(gen, 1e-3)
    assert rate <= 1.2e-3, f"{name}: {rate / 1e-3:.2f} x alpha"


def test_the_fixed_constants_it_replaces_were_loud_on_autocorrelated_residuals() -> None:
    """Why the spread is learned: the same sums on the raw residual, with river's threshold of 25
    at a budget that wants it quieter, fire many times over the budget on AR(1) rho 0.8."""
    alpha = 1e-4
    z = ar1(0.8)(np.random.default_rng(4), 200, 2000)
    raw = np.zeros((200, 2))
    raw_hits = 0
    for t in range(residual.WARMUP, 2000):
        raw[:, 0] = np.maximum(raw[:, 0] + z[:, t] - residual.DRIFT, 0)
        raw[:, 1] = np.maximum(raw[:, 1] - z[:, t] - residual.DRIFT, 0)
        fired = raw.max(axis=1) > 25.0
        raw_hits += int(fired.sum())
        raw[fired] = 0
    assert raw_hits / (200 * 1980) > 10 * alpha  # about one per series per 672 hourly windows
    assert alarm_rate(ar1(0.8), alpha, seed=4) <= 1.5 * alpha  # 40 alarms expected: within its noise


def test_a_shift_is_detected_at_a_pinned_window() -> None:
    rng = np.random.default_rng(12)
    det = ResidualDetectors(alpha=1e-4)
    calm = [det.update(float(z)) for z in rng.normal(0, 1, 400)]
    assert not any(calm)
    up = [det.update(float(z)) for z in rng.normal(1.0, 1, 150)]
    assert up.index("page_hinkley") == 16
    # after a detection it learns the new level and sees the way back down
    down = [det.update(float(z)) for z in rng.normal(-0.5, 1, 200)]
    assert "page_hinkley" in down


def test_an_autocorrelated_series_pays_for_its_wander_with_a_later_detection() -> None:
    """The same shift of 3.5 in the residual's units is seen later on a series that wanders (rho
    0.8: its long-run spread is three times its window spread), and still seen."""
    seen = {}
    for rho in (0.0, 0.8):
        rng = np.random.default_rng(5)
        z = ar1(rho)(rng, 1, 700)[0]
        z[500:] += 3.5
        det = ResidualDetectors(alpha=1e-4)
        fired = [i for i, v in enumerate(z) if det.update(float(v))]
        assert fired and fired[0] >= 500, (rho, fired)
        seen[rho] = fired[0] - 500
    assert seen[0.0] < seen[0.8] < 150


def test_threshold_follows_the_budget() -> None:
    assert threshold(1e-3) == pytest.approx(5.75, abs=0.01)
    assert threshold(1e-3) < threshold(1e-4) < threshold(1e-6)


def test_state_from_an_older_version_starts_again_and_goes_through_json() -> None:
    old = np.array([[40.0, 0.1, -3.0, 1.0, 1e300, -1.0, 0.0]] * 3)
    state = restored(old)
    assert state.shape == (3, residual.WIDTH) and (state == np.asarray(residual.START)).all()
    det = ResidualDetectors(alpha=1e-4)
    for z in np.random.default_rng(0).normal(0, 1, 50):
        det.update(float(z))
    assert np.isfinite(det.state).all()
    json.dumps(det.state.tolist(), allow_nan=False)
