"""Challenger verdicts, per model: one per version, whatever the number of partitions.

The series stage compares each challenger with the champion per series and window and reports, per
version, whether any comparison was made and whether any breached. Here those windows are counted
per model (a window counts once, however many partitions compared in it), the version's shadow
alerts are followed from what is published (firing until resolved), and after ``verdict_after``
compared windows the verdict is given, once: reject while one of its shadow alerts fires, promote
when no compared window breached anywhere; otherwise keep watching.

>>> book = ShadowBook()
>>> book.window("m", {"2.0": False}, [], after=2), book.window("m", {"2.0": False}, [], after=2)
([], [('2.0', 'promote', 2, 0)])
>>> book.window("m", {"2.0": True}, [], after=1)  # given once
[]
"""

from __future__ import annotations

from typing import Any

from ..contract import Alert


class ShadowBook:
    def __init__(self) -> None:
        self.compared: dict[tuple[str, str], int] = {}  # (model, version) -> windows with a comparison
        self.breached: dict[tuple[str, str], int] = {}  # ... with a breach anywhere
        self.verdicts: dict[tuple[str, str], str] = {}  # ... "promote" | "reject", once given
        self.firing: dict[tuple[str, str], set[str]] = {}  # ... fingerprints of its firing shadow alerts

    def window(self, model: str, compared: dict[str, bool], alerts: list[Alert], after: int
               ) -> list[tuple[str, str, int, int]]:
        """One closed window: ``compared`` maps each version compared in it to whether any series
        breached; ``alerts`` are its published shadow alerts. Returns (version, verdict, compared
        windows, breached windows) for each verdict due now."""
        for a in alerts:
            key = (model, a.model_version or "")
            if a.status == "firing":
                self.firing.setdefault(key, set()).add(a.fingerprint)
            else:
                self.firing.get(key, set()).discard(a.fingerprint)
        out = []
        for version in sorted(compared):
            key = (model, version)
            self.compared[key] = self.compared.get(key, 0) + 1
            self.breached[key] = self.breached.get(key, 0) + int(compared[version])
            if key in self.verdicts or self.compared[key] < after:
                continue
            if self.firing.get(key):
                self.verdicts[key] = "reject"
            elif self.breached[key] == 0:
                self.verdicts[key] = "promote"
            else:
                continue  # breached now and then, but never long enough to fire: keep watching
            out.append((version, self.verdicts[key], self.compared[key], self.breached[key]))
        return out

    def snapshot(self) -> list[list[Any]]:
        keys = sorted(set(self.compared) | set(self.verdicts) | set(self.firing))
        return [[m, v, self.compared.get((m, v), 0), self.breached.get((m, v), 0), self.verdicts.get((m, v)),
                 sorted(self.firing.get((m, v), ()))] for m, v in keys]

    def restore(self, rows: list[list[Any]]) -> None:
        for m, v, compared, breached, verdict, firing in rows:
            key = (str(m), str(v))
            self.compared[key], self.breached[key] = int(compared), int(breached)
            if verdict is not None:
                self.verdicts[key] = str(verdict)
            if firing:
                self.firing[key] = {str(f) for f in firing}
