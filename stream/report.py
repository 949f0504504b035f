"""What a backtest found: alerts per model, segment, signal and week, and what would have been
circuit-broken; as text for the terminal and as a self-contained HTML page with each alert's pictures.

>>> from stream.alertmanager import _example
>>> r = BacktestReport()
>>> r.add_alert(_example())
>>> print(r.text().splitlines()[0])
new alerts: 1 (1 prediction); commands: none
"""

from __future__ import annotations

import html
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

from .contract import Alert, Command, ms_to_rfc3339
from .explain import explain_html


def week_of(ms: int) -> str:
    """ISO week of a UTC epoch-ms time, e.g. ``2026-W48``."""
    y, w, _ = datetime.fromtimestamp(ms / 1000, tz=UTC).isocalendar()
    return f"{y}-W{w:02d}"


def _segment(a: Alert) -> str:
    if a.segments:
        return f"{len(a.segments)} segments"
    return ",".join(f"{k}={v}" for k, v in sorted(a.segment.items())) or "(all)"


@dataclass
class BacktestReport:
    """Collects a replay's alerts and commands (only new firing alerts count as findings)."""

    new: list[Alert] = field(default_factory=list)
    latest: dict[str, Alert] = field(default_factory=dict)  # alert_id -> its last transition
    commands: list[Command] = field(default_factory=list)

    def add_alert(self, a: Alert) -> None:
        self.latest[a.alert_id] = a
        if a.status == "firing" and a.notify_reason == "new":
            self.new.append(a)

    def add_command(self, c: Command) -> None:
        self.commands.append(c)

    def counts(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {"model": Counter(), "segment": Counter(), "signal": Counter(), "week": Counter()}
        for a in self.new:
            out["model"][a.model] += 1
            out["segment"][f"{a.model} [{_segment(a)}]"] += 1
            out["signal"][a.signal] += 1
            out["week"][week_of(a.window_start)] += 1
        return out

    def breaks(self) -> list[tuple[Command, Command | None]]:
        """Each circuit break with the restore that ended it (None: still open at the end)."""
        out: list[tuple[Command, Command | None]] = []
        open_: dict[str, int] = {}
        for c in self.commands:
            if c.action == "circuit_break":
                if c.model not in open_:
                    open_[c.model] = len(out)
                    out.append((c, None))
            elif c.action == "restore" and c.model in open_:
                i = open_.pop(c.model)
                out[i] = (out[i][0], c)
        return out

    def text(self) -> str:
        counts = self.counts()
        by_signal = ", ".join(f"{n} {s}" for s, n in sorted(counts["signal"].items()))
        actions = Counter(c.action for c in self.commands)
        lines = [f"new alerts: {len(self.new)}" + (f" ({by_signal})" if by_signal else "") + "; commands: "
                 + (", ".join(f"{n} {a}" for a, n in sorted(actions.items())) or "none")]
        for title, key in (("per week", "week"), ("per model", "model"), ("per segment", "segment")):
            if counts[key]:
                lines.append(f"{title}:")
                lines += [f"  {k}: {n}" for k, n in sorted(counts[key].items())]
        breaks = self.breaks()
        if breaks:
            lines.append("would have been circuit-broken:")
            for brk, restore in breaks:
                until = ms_to_rfc3339(restore.issued_at) if restore is not None else "the end of the replay"
                lines.append(f"  {brk.model} from {ms_to_rfc3339(brk.issued_at)} until {until}: {brk.reason.summary}")
        else:
            lines.append("would have been circuit-broken: nothing")
        return "\n".join(lines)

    def html(self, title: str = "driftline backtest", max_pages: int = 30) -> str:
        """The summary tables, then every new alert's page (its latest state), at most ``max_pages``."""
        counts = self.counts()

        def table(name: str, rows: list[tuple[str, str]]) -> str:
            body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
            return f'<h2>{html.escape(name)}</h2><table class="counts">{body or "<tr><td>none</td></tr>"}</table>'

        parts = [table("Alerts per week", [(k, str(n)) for k, n in sorted(counts["week"].items())]),
                 table("Alerts per model", [(k, str(n)) for k, n in sorted(counts["model"].items())]),
                 table("Alerts per segment", [(k, str(n)) for k, n in sorted(counts["segment"].items())]),
                 table("Alerts per signal", [(k, str(n)) for k, n in sorted(counts["signal"].items())])]
        breaks = [(f"{b.model} from {ms_to_rfc3339(b.issued_at)}",
                   (f"until {ms_to_rfc3339(r.issued_at)}: " if r is not None else "until the end: ") + b.reason.summary)
                  for b, r in self.breaks()]
        parts.append(table("Would have been circuit-broken", breaks))
        pages = []
        for a in self.new[:max_pages]:
            page = explain_html(a)  # as it was when it fired
            body = page.split("<body>", 1)[1].rsplit("</body>", 1)[0]
            pages.append(f'<section class="alert" id="{html.escape(a.alert_id)}">{body}</section>')
        more = len(self.new) - max_pages
        if more > 0:
            pages.append(f"<p>{more} more alerts not shown; the alerts file has them all.</p>")
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:24px;max-width:760px}} td{{padding:2px 10px;font-size:13px}}
.title{{font-weight:bold;font-size:13px}} .tick,.legend{{font-size:10px}} section.alert{{border-top:2px solid #dee2e6;
margin-top:24px}} pre{{background:#f1f3f5;padding:8px;overflow:auto;font-size:11px}} .why th{{text-align:left;
padding:2px 12px 2px 0;color:#495057}} .status-firing{{color:#c92a2a}}</style></head>
<body><h1>{html.escape(title)}</h1><pre>{html.escape(self.text())}</pre>{''.join(parts)}{''.join(pages)}</body></html>
"""


class Progress:
    """A one-line progress bar on a terminal (stderr); silent when that is not a terminal."""

    def __init__(self, out: IO[str] | None = None, every: float = 0.5, force: bool = False):
        self.out = out or sys.stderr
        self.enabled = force or self.out.isatty()
        self.every = every
        self.started = self.last = time.monotonic()

    def update(self, events: int, fraction: float | None, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self.last < self.every):
            return
        self.last = now
        rate = events / max(now - self.started, 1e-9)
        if fraction is not None:
            f = min(max(fraction, 0.0), 1.0)
            bar = "#" * int(f * 30)
            eta = (now - self.started) * (1 - f) / f if f > 0 else 0.0
            line = f"[{bar:<30}] {f:4.0%} {events:,} events {rate:,.0f}/s ETA {eta:4.0f}s"
        else:
            line = f"{events:,} events {rate:,.0f}/s"
        self.out.write("\r" + line + ("\n" if final else ""))
        self.out.flush()
