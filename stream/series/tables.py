"""The series stage's tables: what a series task keeps per model, and the shared names.

A series task (``task.py``) is one input partition's share of the job. Its steps live in one
module each and share the attributes ``SeriesCore`` declares: ``route.py`` (records to series,
column-wise), ``ingest.py`` (into open windows and sketches), ``close.py`` (the watermark closes
windows), ``judge.py`` (per-series tests, lifecycle and evidence at close), ``shadow.py``
(challengers against the champion). What it tells the model stage is a ``WindowReport``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt

from ..baseline import Baseline, Window
from ..calendar import Calendar, Slot
from ..config import Config, Defaults, ResolvedModel, ShadowConfig
from ..contract import Alert, Command, Operation
from ..decide import AlertState
from ..decode import DeadLetter, Record
from ..dedupe import Sent
from ..detect import Verdict
from ..evaluate import Alphas
from ..features import FeatureSketch
from ..grid import Grid
from ..group import Note
from ..metrics import Metrics
from ..shadow import ShadowTracker
from ..sketch import CategoricalSpec, NumericSpec, Spec
from ..store import SeriesStore
from ..typed import TypedDecoder
from ..verdict import Evidence, Params, Proposal, WindowReport
from ..window import OpenWindows, Watermark, WindowSums

FOUR_WEEKS_MS = 28 * 86_400_000

FeatureColumns = list[tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]]
Pending = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64], FeatureColumns | None,
                npt.NDArray[np.int64]]
#: Events queued for the fast lane: store rows, window starts, categories, event times, reach.
LaneEvents = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64],
                   npt.NDArray[np.int64]]
SIGNALS = ("prediction", "volume")
#: The false-alarm budget is split by what is watched, then among the tests that watch it. Each
#: signal (the prediction, the volume, each feature, a declared challenger) gets an equal share:
#: tests of the same signal fire on the same drifts, so splitting evenly over tests would pay twice
#: for the same evidence and leave the signal that one test watches alone (a model's volume) with
#: the least. Within the prediction's share, its window test takes half and Page-Hinkley and the
#: fast lane a quarter each (the window test three quarters without the lane); within the
#: volume's, its window test three quarters and the silence test the rest.
SHARES = {"prediction": 0.5, "page_hinkley": 0.25, "lane": 0.25, "volume": 0.75, "silence": 0.25,
          "feature": 1.0, "shadow": 1.0}
CLEAN_FRACTION = 0.5


@dataclass
class Output:
    alerts: list[Alert] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    reports: list[WindowReport] = field(default_factory=list)  # for the model stage (not published)
    proposals: list[Proposal] = field(default_factory=list)  # for the model stage (not published)
    params: list[Params] = field(default_factory=list)  # decided by the model stage, for every series task
    accepts: list[Operation] = field(default_factory=list)  # operators' accepts, for every series task

    def extend(self, other: Output) -> None:
        self.alerts += other.alerts
        self.commands += other.commands
        self.dead_letters += other.dead_letters
        self.reports += other.reports
        self.proposals += other.proposals
        self.params += other.params
        self.accepts += other.accepts


@dataclass
class Stats:
    consumed: int = 0
    processed: int = 0
    dead_lettered: int = 0
    windows_closed: int = 0


def take(column: Any, keep: npt.NDArray[np.bool_]) -> Any:
    """The rows of a batch column that ``keep`` marks: an array indexed, a list filtered."""
    if isinstance(column, np.ndarray):
        return column[keep]
    return [v for v, k in zip(column, keep.tolist(), strict=True) if k]


def segment_key(segment: dict[str, str]) -> str:
    """Canonical text of a segment: ``k=v`` pairs sorted by key, ``,``-joined (``""`` for none)."""
    return ",".join(f"{k}={segment[k]}" for k in sorted(segment))


def fingerprint(model: str, segment: str, signal: str) -> str:
    return hashlib.sha256(f"{model}|{segment}|{signal}".encode()).hexdigest()[:16]


class ModelState:
    """Everything the engine keeps for one model."""

    def __init__(self, cfg: ResolvedModel, baseline_windows: int):
        self.cfg = cfg
        # weekly: the slots of a week (168 for 1 h windows), of a weekday and a weekend day (48),
        # and room for three holidays' (72)
        per_day = max(1, 86_400_000 // cfg.window)
        self.store = SeriesStore(baseline_windows, slots=12 * per_day if cfg.calendar == "weekly" else 8)
        self.calendar = Calendar(
            cfg.timezone,
            cfg.holidays,
            {date.fromisoformat(k): v for k, v in cfg.holiday_dates.items()},
            weekly=cfg.calendar == "weekly",
            window=cfg.window,
            bridge_days=cfg.bridge_days,
        )
        self.grid = Grid(cfg.window, cfg.timezone)  # window boundaries in local time (``grid.py``)
        self.windows = OpenWindows(self.grid)
        self.spec: Spec | None = None
        self.sids: list[int] = []
        self.by_segment: dict[str, int] = {}
        # Events waiting for their bin edges: series, event times, predictions (values, or label
        # codes), the partition's latest event time at each (the fast lane's order), and (waiting for shared parameters) the features as ``FeatureSketch.wait`` keeps them.
        self.pending: list[Pending] = []
        self.features = FeatureSketch(cfg.features) if cfg.features else None
        self.seen: dict[int, set[str]] = {}  # event ids per open window
        # per open window: events per model_version (which versions serve, in what share: model/release.py)
        self.versions: dict[int, dict[str, int]] = {}
        self.learn_until: int | None = None  # event time that ends the learning of bin edges
        self.lane_queue: list[LaneEvents] = []  # counted, not yet stepped by the fast lane (``lane.py``)
        self.last_ts: int | None = None  # the latest event time counted (a refused event without one is counted then)
        # Parameters decided by the model stage for every partition (a task in a stage of several),
        # whether this task proposed its sample, and the windows due while it waited for them
        # (window start -> the series then: the ones its close judges).
        self.params: Params | None = None
        self.proposed = False
        self.held: dict[int, list[int]] = {}
        # A challenger's events that came before the shared edges: (series, window starts, values, versions).
        self.shadow_pending: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64],
                                        list[str]]] = []
        self.by_values: dict[Any, int] = {}  # segment key as decoded -> series id (a cache)
        # The same cache for the native decoder: its segment number -> series id (-1: not looked up)
        self.native_sids: npt.NDArray[np.int64] = np.full(0, -1, np.int64)
        self.native_table: Any = None  # the native decoder's segment table those numbers refer to
        sc = cfg.shadow
        self.shadow = ShadowTracker(sc.champion, sc.min_events, sc.min_divergence) if sc is not None else None
        # Without a declared shadow: a release's canary. Events of a version other than the one that
        # served first (``incumbent``, until it stops serving) are also counted apart, and compared
        # with the incumbent's in the same window and series (series/shadow.py): a release that
        # predicts differently from the version before it is rolled back before its share is large
        # enough to move the series' own tests.
        self.incumbent: str | None = None
        self.canary = ShadowTracker("", ShadowConfig.model_fields["min_events"].default,
                                    ShadowConfig.model_fields["min_divergence"].default) if sc is None else None



    def new_spec(self, numeric: bool) -> Spec:
        """The prediction's sketch, on the shared edges if they were decided already."""
        if not numeric:
            return CategoricalSpec()
        spec = NumericSpec()
        if self.params is not None and self.params.edges is not None:
            spec.freeze_at(self.params.edges)
        return spec


class SeriesCore:
    """The attributes the series task's steps share, and the steps they call across modules."""

    config: Config
    d: Defaults
    metrics: Metrics
    clock: Callable[[], float] | None
    budget_share: float
    shared_edges: bool  # bin edges and feature kinds come from the model stage (``Params``), not learned here
    idle_after: float
    watermark: Watermark
    models: dict[str, ModelState]
    # per series id: its model, segment, segment key, and the start of its last window with events
    series_model: list[str]
    series_segment: list[dict[str, str]]
    series_key: list[str]
    last_active: list[int]
    alert_states: dict[tuple[int, str], AlertState]
    sent: dict[str, Sent]
    stats: Stats
    typed: TypedDecoder
    _batch: Sequence[Record]
    _early: Output  # the fast lane's reports of events counted outside a batch, for the next output
    _reach: int  # the latest event time of the batches before this one
    _prefix: npt.NDArray[np.int64] | None  # per place in this batch: the latest event time up to it
    _parts: int | npt.NDArray[np.int64]

    def _alpha(self, m: ModelState, series: int, test: str = "prediction") -> float:
        """The false-alarm probability one test of one series may spend per window: the model's
        budget (this task's share of it) over the windows in four weeks, its series, its signals,
        and the test's share of its signal (``SHARES``). A feature's test is ``"feature"``."""
        signals = len(SIGNALS) + len(m.cfg.features) + (1 if m.cfg.shadow is not None else 0)
        share = SHARES[test]
        if test == "prediction" and not self.d.fast_lane:
            share += SHARES["lane"]
        budget = self.d.false_alarms_per_4_weeks * self.budget_share * share
        return budget / ((FOUR_WEEKS_MS / m.cfg.window) * max(series, 1) * signals)

    def _alphas(self, m: ModelState, series: int) -> Alphas:
        """The window tests' shares, per signal."""
        return Alphas(self._alpha(m, series, "prediction"), self._alpha(m, series, "volume"),
                      self._alpha(m, series, "feature"))

    def _dead(self, out: Output, dl: DeadLetter) -> None:
        raise NotImplementedError

    def _new_series(self, m: ModelState, seg: dict[str, str], skey: str) -> int:
        raise NotImplementedError

    def _lane(self, m: ModelState, rows: npt.NDArray[np.int64], ws: npt.NDArray[np.int64],
              cats: npt.NDArray[np.int64], ts: npt.NDArray[np.int64] | None, out: Output,
              where: npt.NDArray[np.int64] | None = None, reach: npt.NDArray[np.int64] | None = None) -> None:
        raise NotImplementedError

    def _run_lane(self, m: ModelState, upto: int | None, out: Output) -> None:
        raise NotImplementedError

    def _arrived(self, sids: npt.NDArray[np.int64], now: float) -> None:
        raise NotImplementedError

    def _step(self, m: ModelState, sid: int, signal: str, found: tuple[Verdict, Baseline] | None,
              evidence: bool | None, window: Window, end: int) -> tuple[str, str, int, str] | None:
        raise NotImplementedError

    def _lane_found(self, m: ModelState, sid: int, w: int, sums: WindowSums, row: int, value: float,
                    threshold: float, count: int, invalid: int, hist: npt.NDArray[np.int64]
                    ) -> tuple[tuple[Verdict, Baseline], Window]:
        raise NotImplementedError

    def _evidence(self, m: ModelState, sid: int, signal: str, found: tuple[Verdict, Baseline], slot: Slot,
                  window: Window, fp: str, features: list[str]) -> Evidence:
        raise NotImplementedError

    def _flush_pending(self, m: ModelState) -> None:
        raise NotImplementedError

    def _evaluate(self, m: ModelState, sums: WindowSums | None, ws: int, slot: Slot, end: int, alpha: Alphas,
                  sids: list[int]) -> list[Note]:
        raise NotImplementedError

    def _propose(self, m: ModelState, out: Output) -> None:
        raise NotImplementedError

    def _canary_close(self, m: ModelState, ws: int, sums: WindowSums | None, slot: Slot, end: int, alpha: float,
                      report: WindowReport) -> None:
        raise NotImplementedError

    def _shadow_close(self, m: ModelState, ws: int, sums: WindowSums | None, slot: Slot, end: int,
                      alpha: float, report: WindowReport) -> None:
        raise NotImplementedError
