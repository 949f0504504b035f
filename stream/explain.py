"""``driftline explain``: an alert's picture, from its own payload.

Text for the terminal, and a self-contained HTML page with inline SVG charts: the current window
against its same-slot baseline, the last 24 windows and the same slot in past weeks, each score
against its threshold.
"""

from __future__ import annotations

import html
import shutil
import subprocess
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson

from .contract import Alert, Histogram, Operation, ScorePoint, ms_to_rfc3339


def find_alert(lines: Iterable[bytes], alert_id: str) -> Alert | None:
    """The last record of ``alert_id`` (its latest transition) among JSON lines or Kafka values."""
    found = None
    for raw in lines:
        raw = raw.strip()
        if not raw:
            continue
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(data, dict) and data.get("alert_id") == alert_id:
            found = Alert.model_validate(data)
    return found


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


#: What each test measures, for the "Why" line: an alert whose score is below its threshold was
#: fired by a test that looks beyond this one window, and the page says which and why.
TEST_WHY = {
    "js_divergence": "Jensen-Shannon divergence of the prediction's shares (labels, or bins of numbers) from the slot's",
    "mean_shift": "shift of the mean prediction, against the slot's week-to-week variation",
    "log_volume": "log ratio of the event count to the slot's",
    "page_hinkley": "Page-Hinkley fired: a sustained shift of the residual over recent windows, beyond what its own "
                    "spread and autocorrelation explain",
    "sequential": "the fast lane fired inside the window: the events so far are far more concentrated than the "
                  "slot's history allows, and the evidence only grew",
    "invalid": "the fast lane fired inside the window: invalid predictions (null, NaN, out of range) far beyond "
               "what the slot's history allows",
    "js_divergence_g_test": "the version differs from the one serving beside it, on the same traffic",
}


def why(a: Alert) -> str:
    """Which test fired and what its numbers say."""
    ratio = a.score / a.threshold if a.threshold else 0.0
    what = TEST_WHY.get(a.test, a.test)
    if a.test == "page_hinkley":  # scored across windows: the window's own numbers are context
        return (f"{what}. This window alone scores {a.score:.4f}, {ratio:.1f}x the window test's threshold "
                f"{a.threshold:.4f}: {'it would have fired anyway' if ratio > 1 else 'it would not have fired alone'}")
    return f"{a.test}: {what}. Score {a.score:.4f} is {ratio:.1f}x its threshold {a.threshold:.4f}"


def explain_text(a: Alert) -> str:
    lines = [
        f"{a.alert_id}  {a.status.upper()}  severity={a.severity}  signal={a.signal}",
        a.summary,
        f"why      {why(a)}",
        f"window   {ms_to_rfc3339(a.window_start)} .. {ms_to_rfc3339(a.window_end)}  ({a.context})",
        f"baseline {a.baseline_info.windows} windows of {a.baseline_info.slot} "
        f"({a.baseline_info.kind}, confidence {a.baseline_info.confidence})",
        f"score    {a.score:.4f}   threshold {a.threshold:.4f}   ratio {a.score / a.threshold if a.threshold else 0:.1f}x",
        f"current  count={a.current.count:.0f} mean={_fmt(a.current.mean)}   "
        f"baseline count={a.baseline.count:.0f} mean={_fmt(a.baseline.mean)}",
        "same slot, past weeks (score / threshold):",
    ]
    for p in a.history.same_slot:
        lines.append(f"  {ms_to_rfc3339(p.window_start)}  {_fmt(p.score)} / {_fmt(p.threshold)}  n={p.count:.0f}")
    lines.append("last 24 windows (score / threshold):")
    for p in a.history.recent:
        mark = " <" if p.score is not None and p.threshold is not None and p.score > p.threshold else ""
        lines.append(f"  {ms_to_rfc3339(p.window_start)}  {_fmt(p.score)} / {_fmt(p.threshold)}  n={p.count:.0f}{mark}")
    return "\n".join(lines)


def _bars(title: str, labels: Sequence[str], series: dict[str, Sequence[float]], colors: dict[str, str],
          chart_id: str) -> str:
    w, h, pad = 640, 220, 30
    n = max(len(labels), 1)
    top = max((max(v) if len(v) else 0.0) for v in series.values()) or 1.0
    group = (w - 2 * pad) / n
    bar = min(group / (len(series) + 1), 28.0)  # a lone point is a bar, not a wall
    parts = [f'<svg id="{chart_id}" class="chart" role="img" aria-label="{html.escape(title)}" width="{w}" height="{h}">',
             f'<text x="{pad}" y="16" class="title">{html.escape(title)}</text>']
    for j, (name, values) in enumerate(series.items()):
        for i, v in enumerate(values):
            bh = (h - 2 * pad - 14) * v / top
            x = pad + i * group + j * bar
            parts.append(f'<rect class="bar {name}" x="{x:.1f}" y="{h - pad - bh:.1f}" width="{bar:.1f}" '
                         f'height="{bh:.1f}" fill="{colors[name]}"><title>{html.escape(labels[i])}: {v:.3f}</title></rect>')
    for i, label in enumerate(labels):
        if n <= 12 or i % max(n // 8, 1) == 0:
            parts.append(f'<text x="{pad + i * group:.1f}" y="{h - 8}" class="tick">{html.escape(label)}</text>')
    legend = " ".join(f'<tspan fill="{colors[k]}">&#9632; {k}</tspan>' for k in series)
    parts.append(f'<text x="{pad}" y="30" class="legend">{legend}</text></svg>')
    return "".join(parts)


def _scores(title: str, points: Sequence[ScorePoint], chart_id: str) -> str:
    labels = [ms_to_rfc3339(p.window_start)[5:16].replace("T", " ") for p in points]
    return _bars(
        title,
        labels,
        {"score": [p.score or 0.0 for p in points], "threshold": [p.threshold or 0.0 for p in points]},
        {"score": "#d9480f", "threshold": "#868e96"},
        chart_id,
    )


def _hist_labels(hist: Histogram) -> list[str]:
    if hist.labels is not None:
        return list(hist.labels)
    edges = hist.edges or []
    out = [f"< {edges[0]:.3g}"] if edges else ["all"]
    out += [f"{a:.3g}-{b:.3g}" for a, b in zip(edges[:-1], edges[1:], strict=False)]
    if edges:
        out.append(f">= {edges[-1]:.3g}")
    return out


def explain_html(a: Alert) -> str:
    """The alert as a self-contained page: why it fired in one table, then the three pictures."""
    charts = []
    cur, base = a.current.histogram, a.baseline.histogram
    if cur is not None and base is not None:
        ct, bt = sum(cur.counts) or 1.0, sum(base.counts) or 1.0
        charts.append(_bars(
            "Current window vs same-slot baseline (share of events)", _hist_labels(cur),
            {"current": [c / ct for c in cur.counts], "baseline": [c / bt for c in base.counts]},
            {"current": "#d9480f", "baseline": "#1c7ed6"}, "distribution",
        ))
    charts.append(_scores("Last 24 hours: score against threshold", a.history.recent, "recent"))
    charts.append(_scores(f"Same slot in past weeks ({a.baseline_info.slot})", a.history.same_slot, "same-slot"))
    title = f"driftline alert {a.alert_id}: {a.model} {a.signal} {a.status}"
    segment = ", ".join(f"{k}={v}" for k, v in sorted(a.segment.items())) or "(all segments)"
    facts = [
        ("Why", why(a)),
        ("Compared with", f"{a.baseline_info.windows} past windows of {a.baseline_info.slot} "
                          f"({a.baseline_info.kind}, confidence {a.baseline_info.confidence})"),
        ("Window", f"{ms_to_rfc3339(a.window_start)} .. {ms_to_rfc3339(a.window_end)} ({a.context})"),
        ("Segment", segment),
        ("Severity", f"{a.severity} ({a.notify_reason})"),
        ("Events", f"{a.current.count:.0f} now, {a.baseline.count:.0f} per baseline window"),
    ]
    if a.features:
        facts.append(("Features drifting with it", ", ".join(a.features)))
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:24px;max-width:720px}} .title{{font-weight:bold;font-size:13px}}
.tick,.legend{{font-size:10px}} pre{{background:#f1f3f5;padding:8px;overflow:auto;font-size:11px}}
table.why{{border-collapse:collapse;margin:12px 0}} .why th{{text-align:left;padding:2px 12px 2px 0;color:#495057}}
.status-firing{{color:#c92a2a}} .status-resolved{{color:#2b8a3e}}</style></head>
<body><h1 class="status-{html.escape(a.status)}">{html.escape(title)}</h1>
<p class="summary">{html.escape(a.summary)}</p>
<table class="why">{rows}</table>
{''.join(charts)}
<details><summary>All numbers</summary><pre>{html.escape(explain_text(a))}</pre></details>
</body></html>
"""


def index_html(alerts: Sequence[Alert], operations: Sequence[Operation] = ()) -> str:
    """A list of alerts, newest first, each linking to its page; the operators' latest commands."""
    ops = "".join(
        f"<tr><td>{html.escape(ms_to_rfc3339(o.issued_at))}</td><td>{html.escape(o.action)}</td>"
        f"<td>{html.escape(o.model)}</td><td>{html.escape(_scope(o))}</td><td>{html.escape(o.by)}</td>"
        f"<td>{html.escape(o.note)}</td></tr>"
        for o in reversed(operations))
    operated = (f"<h2>operator commands</h2><table><tr><th>issued</th><th>action</th><th>model</th><th>scope</th>"
                f"<th>by</th><th>note</th></tr>{ops}</table>") if ops else ""
    items = "".join(
        f'<tr><td><a href="/alerts/{html.escape(a.alert_id)}">{html.escape(a.alert_id)}</a></td>'
        f"<td>{html.escape(a.status)}</td><td>{html.escape(a.severity)}</td><td>{html.escape(a.model)}</td>"
        f"<td>{html.escape(a.signal)}</td><td>{html.escape(ms_to_rfc3339(a.window_start))}</td>"
        f"<td>{html.escape(a.summary + (' (silenced until ' + ms_to_rfc3339(a.silenced_until) + ')' if a.silenced_until else ''))}</td></tr>"
        for a in reversed(alerts))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>driftline alerts</title>
<style>body{{font-family:sans-serif;margin:24px}} td,th{{padding:2px 8px;text-align:left;font-size:13px}}</style></head>
<body><h1>driftline alerts</h1><table><tr><th>alert</th><th>status</th><th>severity</th><th>model</th>
<th>signal</th><th>window</th><th>summary</th></tr>{items}</table>{operated}</body></html>
"""


def _scope(o: Operation) -> str:
    if o.action == "silence":
        return f"for {o.duration_ms / 3_600_000:g} h" if o.duration_ms else "silence ended"
    return ", ".join(",".join(f"{k}={v}" for k, v in sorted(s.items())) for s in o.segments) or "every segment"


class AlertPages:
    """The service's /alerts pages: its last ``keep`` published alerts, each with its explain page.
    The consume loop adds (after a commit: published), the HTTP thread reads."""

    def __init__(self, keep: int = 500):
        self.keep = keep
        self._alerts: OrderedDict[str, Alert] = OrderedDict()
        self.operations: list[Operation] = []  # the operators' latest commands applied (replaced whole)
        self._lock = threading.Lock()

    def add(self, alerts: Iterable[Alert]) -> None:
        with self._lock:
            for a in alerts:
                self._alerts.pop(a.alert_id, None)
                self._alerts[a.alert_id] = a
            while len(self._alerts) > self.keep:
                self._alerts.popitem(last=False)

    def page(self, path: str) -> tuple[int, str] | None:
        """/alerts and /alerts/ALERT_ID (status and HTML); None for any other path."""
        if path in ("/alerts", "/alerts/"):
            with self._lock:
                return 200, index_html(list(self._alerts.values()), self.operations)
        if path.startswith("/alerts/"):
            alert_id = path.removeprefix("/alerts/").removesuffix(".html")
            with self._lock:
                alert = self._alerts.get(alert_id)
            if alert is None:
                return 404, f"<p>alert {html.escape(alert_id)} is not among the last {self.keep} alerts</p>"
            return 200, explain_html(alert)
        return None


def write_page(a: Alert, out: Path) -> Path:
    out.write_text(explain_html(a))
    return out


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def render_png(page: Path, png: Path, width: int = 780, height: int = 1250, chromium: str | None = None) -> Path:
    """A screenshot of an HTML page by headless Chromium (Debian: ``apt-get install chromium``)."""
    browser = chromium or find_chromium()
    if browser is None:
        raise RuntimeError("a PNG needs Chromium: install it (Debian: apt-get install chromium) or use the HTML page")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
               f"--window-size={width},{height}", f"--screenshot={png.resolve()}", page.resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0 or not png.exists():
        raise RuntimeError(f"chromium could not render {page}: {done.stderr.strip()[-500:]}")
    return png
