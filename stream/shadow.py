"""Shadow mode: a challenger model version's predictions against the champion's, per segment and window.

Model servers that run a candidate version beside the one in service send both versions' predictions,
each tagged with its ``model_version``. The challenger's events are kept out of the model's drift
series (they are not the traffic the model serves) and counted on the same bins, per segment and
window. When a window closes, each segment's challenger histogram is compared with the champion's
of the same window: same traffic, same hour, so no calendar baseline is needed.

The comparison is the Jensen-Shannon divergence of the two histograms, weighted by their event
counts. Twice the total count times that divergence (in nats) is the G statistic of a two-sample
test of homogeneity, chi-square with (bins - 1) degrees of freedom under "same distribution". So the
threshold is not hand-set: it is the divergence the G-test calls significant at the model's
false-alarm budget, and never below ``min_divergence`` (with millions of events, a real but tiny
difference would otherwise count).

>>> import numpy as np
>>> same = divergence_test(np.array([500., 300., 200.]), np.array([490., 310., 200.]), alpha=1e-4)
>>> round(same[0], 4), same[0] > same[1]
(0.0001, False)
>>> moved = divergence_test(np.array([500., 300., 200.]), np.array([200., 300., 500.]), alpha=1e-4)
>>> round(moved[0], 3), moved[0] > moved[1]
(0.096, True)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import chi2

LN2 = math.log(2.0)


def divergence_test(champion: npt.NDArray[np.float64], challenger: npt.NDArray[np.float64],
                    alpha: float) -> tuple[float, float]:
    """(score, threshold) in bits: the count-weighted JS divergence of the two histograms, and the
    value of it that the G-test of homogeneity calls significant at ``alpha``."""
    n1, n2 = float(champion.sum()), float(challenger.sum())
    if n1 <= 0 or n2 <= 0:
        return 0.0, math.inf
    total = n1 + n2
    pooled = (champion + challenger) / total
    used = pooled > 0
    score = 0.0
    for counts, n in ((champion, n1), (challenger, n2)):
        p = counts[used] / n
        nz = p > 0
        score += (n / total) * float(np.sum(p[nz] * np.log(p[nz] / pooled[used][nz])))
    df = max(int(used.sum()) - 1, 1)
    threshold = float(chi2.isf(alpha, df)) / (2.0 * total)
    return score / LN2, threshold / LN2


@dataclass
class Comparison:
    """One segment's challenger against the champion in one closed window."""

    sid: int
    version: str
    champion: npt.NDArray[np.float64]
    challenger: npt.NDArray[np.float64]
    score: float
    threshold: float
    breach: bool | None  # None: too few events on one side to say


@dataclass
class ShadowTracker:
    """Challenger histograms of one model's open windows, and what has been seen of each version.

    ``open[window start][(series id, version)]`` is the challenger's histogram there; the
    champion's is the model's own window sum for that series.
    """

    champion: str
    min_events: int = 100
    min_divergence: float = 0.02
    open: dict[int, dict[tuple[int, str], npt.NDArray[np.int64]]] = field(default_factory=dict)
    compared: dict[str, int] = field(default_factory=dict)  # version -> windows with a comparison
    breached: dict[str, int] = field(default_factory=dict)  # version -> windows with a breach anywhere
    # version -> "promote" | "reject": only read from states written before the model stage gave the
    # verdicts (stream/model/shadow.py, which also counts per model what ``compared`` counts here)
    verdicts: dict[str, str] = field(default_factory=dict)
    recent: dict[tuple[int, str], deque[tuple[int, float, float, float]]] = field(default_factory=dict)

    def add(self, ws: npt.NDArray[np.int64], sids: npt.NDArray[np.int64], bins: npt.NDArray[np.int64],
            versions: list[str], size: int) -> None:
        """Count challenger events: one histogram per (window, series, version)."""
        names, vcode = np.unique(np.array(versions, dtype=object), return_inverse=True)
        groups, inv = np.unique(np.stack([ws, sids, vcode.reshape(-1)], axis=1), axis=0, return_inverse=True)
        hist = np.bincount(inv.reshape(-1) * size + bins, minlength=len(groups) * size).reshape(len(groups), size)
        for (w, s, v), counts in zip(groups.tolist(), hist, strict=True):
            window = self.open.setdefault(w, {})
            key = (s, str(names[v]))
            have = window.get(key)
            if have is None:
                window[key] = counts
            else:
                if len(have) < len(counts):
                    have = np.concatenate([have, np.zeros(len(counts) - len(have), np.int64)])
                have[: len(counts)] += counts
                window[key] = have

    def close(self, ws: int, champion_of: dict[int, npt.NDArray[np.int64]], alpha: float) -> list[Comparison]:
        """Compare every challenger histogram of window ``ws`` with the champion's of its series."""
        out = []
        by_version: dict[str, bool] = {}
        for (sid, version), counts in sorted(self.open.pop(ws, {}).items()):
            champ = champion_of.get(sid)
            cur = counts.astype(np.float64)
            base = np.zeros_like(cur) if champ is None else champ.astype(np.float64)
            n = max(len(cur), len(base))
            cur, base = np.pad(cur, (0, n - len(cur))), np.pad(base, (0, n - len(base)))
            if cur.sum() < self.min_events or base.sum() < self.min_events:
                out.append(Comparison(sid, version, base, cur, 0.0, math.inf, None))
                continue
            score, stat = divergence_test(base, cur, alpha)
            threshold = max(stat, self.min_divergence)
            breach = score > threshold
            out.append(Comparison(sid, version, base, cur, score, threshold, breach))
            by_version[version] = by_version.get(version, False) or breach
            ring = self.recent.setdefault((sid, version), deque(maxlen=24))
            ring.append((ws, float(cur.sum()), score, threshold))
        for version, any_breach in by_version.items():
            self.compared[version] = self.compared.get(version, 0) + 1
            self.breached[version] = self.breached.get(version, 0) + int(any_breach)
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "open": [[w, [[s, v, c.tolist()] for (s, v), c in hists.items()]] for w, hists in self.open.items()],
            "compared": self.compared, "breached": self.breached, "verdicts": self.verdicts,
            "recent": [[s, v, list(map(list, ring))] for (s, v), ring in self.recent.items()],
        }

    def restore(self, d: dict[str, Any]) -> None:
        self.open = {int(w): {(int(sid), str(v)): np.asarray(c, dtype=np.int64) for sid, v, c in hists}
                     for w, hists in d.get("open", [])}
        self.compared = dict(d.get("compared", {}))
        self.breached = dict(d.get("breached", {}))
        self.verdicts = dict(d.get("verdicts", {}))
        self.recent = {(int(sid), str(v)): deque((tuple(p) for p in ring), maxlen=24) for sid, v, ring in d.get("recent", [])}
