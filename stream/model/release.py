"""Releases: which versions serve each model and since when, and whether a drift has one behind it.

A drift that starts as a new ``model_version`` takes traffic is a bad release, and the answer is the
version from before it (Argo Rollouts and Kayenta judge a canary against the release it replaces):
``rollback`` to the last version that served clean windows. A drift with no release behind it is a
changed world: circuit break, then retrain. This book answers "is there a release behind it?" from
the versions each window report counted, and nothing else: no clock, no sketches.

>>> book = ReleaseBook()
>>> H = 3_600_000
>>> for w in range(5):  # version 3.1.0 alone, clean
...     book.window("fraud", w * H, (w + 1) * H, {"3.1.0": 100}, clean=True)
>>> book.window("fraud", 5 * H, 6 * H, {"3.1.0": 70, "3.2.0": 30}, clean=False)
>>> r = book.behind("fraud", drift_started=5 * H, window=H)
>>> r.version, r.target, round(r.share, 2)
('3.2.0', '3.1.0', 0.3)
>>> book.behind("fraud", drift_started=12 * H, window=H) is None  # long after its arrival: not the release
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..verdict import MIN_SHARE

#: A drift that starts within this many windows of a version's first traffic is that release's.
RELEASE_WINDOWS = 3
#: Windows a rollback is given to take effect before a drift that goes on escalates (its window
#: itself is partly the bad release's, and the next must show whether the old version is clean).
GRACE_WINDOWS = 2


@dataclass
class Served:
    """One version of one model: its first window, its latest share, its last clean window."""

    first: int  # start of the first window it served in
    share: float | None = None  # of the model's events in the latest closed window (None: none yet)
    clean: int | None = None  # end of the last window it served in with no prediction alert firing


@dataclass(frozen=True)
class Behind:
    """The release a drift started with, and the version to go back to."""

    version: str
    target: str
    share: float | None  # in the latest closed window (None: it has served in the open one only)
    first: int
    drift_started: int


@dataclass
class ReleaseBook:
    served: dict[str, dict[str, Served]] = field(default_factory=dict)  # model -> version -> Served
    rolled_back: dict[tuple[str, str], int] = field(default_factory=dict)  # (model, version) -> when rolled back

    def window(self, model: str, start: int, end: int, versions: dict[str, int], clean: bool,
               early: bool = False) -> None:
        """A window's events per version. An ``early`` report's (the open window's so far) only say
        which versions serve: how far its counts got depends on the batches, its shares would too."""
        total = sum(versions.values())
        if total <= 0:
            return
        book = self.served.setdefault(model, {})
        for version, n in sorted(versions.items()):
            s = book.get(version)
            if s is None:
                s = book[version] = Served(first=start)
            s.first = min(s.first, start)
            if early:
                continue
            s.share = n / total
            if clean and s.share >= MIN_SHARE:
                s.clean = end if s.clean is None else max(s.clean, end)
        if not early:
            for version, s in book.items():
                if version not in versions:
                    s.share = 0.0

    def behind(self, model: str, drift_started: int, window: int) -> Behind | None:
        """The release behind a drift first seen in the window starting at ``drift_started``: a
        version serving now that first took traffic at most ``RELEASE_WINDOWS`` windows before,
        and not after it, with a version that served clean windows to go back to."""
        book = self.served.get(model, {})
        new = [(v, s) for v, s in book.items()  # (no closed window yet: serving in the open one)
                if (s.share is None or s.share >= MIN_SHARE)
                and drift_started - RELEASE_WINDOWS * window <= s.first <= drift_started]
        old = [(v, s) for v, s in book.items() if s.clean is not None and all(v != n for n, _s in new)]
        if not new or not old:
            return None
        version, s = max(new, key=lambda vs: (vs[1].share if vs[1].share is not None else 1.0, vs[0]))
        target, _t = max(old, key=lambda vs: (vs[1].clean or 0, vs[0]))
        return Behind(version, target, s.share, s.first, drift_started)

    def snapshot(self) -> dict[str, Any]:
        return {"served": [[m, v, s.first, s.share, s.clean] for m, vs in sorted(self.served.items())
                           for v, s in sorted(vs.items())],
                "rolled_back": sorted([m, v, t] for (m, v), t in self.rolled_back.items())}

    def restore(self, d: dict[str, Any]) -> None:
        for m, v, first, share, clean in d.get("served", []):
            self.served.setdefault(str(m), {})[str(v)] = Served(int(first), None if share is None else float(share),
                                                                None if clean is None else int(clean))
        self.rolled_back = {(str(m), str(v)): int(t) for m, v, t in d.get("rolled_back", [])}

    def grace(self, model: str, now: int, window: int) -> bool:
        """True while a rollback of the model is younger than ``GRACE_WINDOWS`` windows."""
        return any(m == model and now < t + GRACE_WINDOWS * window for (m, _v), t in self.rolled_back.items())
