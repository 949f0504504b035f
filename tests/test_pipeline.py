"""The two stages in one process (issue 13): one decision per model, whatever the partitions.

Events are keyed by model|segment over several partitions, as model servers key them; each
partition has its own series task, and the model task decides each window once every partition
has passed it. Without Kafka: the stages meet in ``Pipeline``, which ``driftline replay`` runs.
"""

from __future__ import annotations

import random
import zlib

import numpy as np
import orjson
import pytest

from stream.config import Config, Defaults, ModelConfig, ShadowConfig
from stream.decode import Record
from stream.engine import Engine, Output, segment_key
from stream.model.frontier import Frontier
from stream.pipeline import Pipeline
from stream.simulate import HOUR_MS, Drift, Scenario, simulate
from stream.verdict import WindowReport, decode, encode

END = 1795716000000  # 2026-11-26 18:00 UTC
SEGS = tuple({"region": f"r{i}"} for i in range(6))


def keyed(scenarios: list[Scenario], seed: int = 1) -> list[tuple[int, bytes]]:
    """(ts, event) of every scenario, merged in time order (stable)."""
    out = []
    for k, sc in enumerate(scenarios):
        out += [(int(e["ts"]), orjson.dumps(e)) for e in simulate(sc, seed=seed + k)]  # type: ignore[call-overload]
    out.sort(key=lambda t: t[0])
    return out


def partitioned(events: list[tuple[int, bytes]], partitions: int) -> dict[int, list[bytes]]:
    """Each event to a partition by its model|segment key, in stream order within each."""
    by: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    for _ts, raw in events:
        e = orjson.loads(raw)
        key = f"{e['model']}|{segment_key(e.get('segment') or {})}"
        by[zlib.crc32(key.encode()) % partitions].append(raw)
    return by


def run(cfg: Config, by: dict[int, list[bytes]], order: str = "round", chunk: int = 2000, seed: int = 0) -> Output:
    """The partitions' records through a pipeline, interleaved as ``order`` says: ``round`` (a batch of
    each in turn), ``serial`` (each partition whole, one after another), ``random`` (random batches
    of random partitions, mixed into one batch now and then)."""
    pipeline = Pipeline(cfg, partitions=list(by))
    out = Output()
    at = dict.fromkeys(by, 0)
    rng = random.Random(seed)

    def take(p: int, n: int) -> list[Record]:
        recs = [Record(r, None, "in", p, at[p] + i) for i, r in enumerate(by[p][at[p]:at[p] + n])]
        at[p] += len(recs)
        return recs

    if order == "serial":
        for p in by:
            while at[p] < len(by[p]):
                out.extend(pipeline.process(take(p, chunk)))
    else:
        while any(at[p] < len(by[p]) for p in by):
            left = [p for p in by if at[p] < len(by[p])]
            if order == "round":
                for p in left:
                    out.extend(pipeline.process(take(p, chunk)))
            else:
                batch = [r for p in rng.sample(left, rng.randint(1, len(left))) for r in take(p, rng.randint(1, 2 * chunk))]
                out.extend(pipeline.process(batch))
    out.extend(pipeline.finish())
    return out


def apart(cfg: Config, by: dict[int, list[bytes]], chunk: int = 2000) -> Output:
    """One engine per partition, each deciding alone, as the service used to run them."""
    out = Output()
    for p, raws in by.items():
        e = Engine(cfg, budget_share=1 / len(by))
        for i in range(0, len(raws), chunk):
            out.extend(e.process([Record(r, None, "in", p, i + j) for j, r in enumerate(raws[i:i + chunk])]))
        out.extend(e.finish())
    return out


def transitions(out: Output) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    return ([(a.alert_id, a.status, a.notify_reason) for a in out.alerts], [(c.command_id, c.action) for c in out.commands])


def models(names: list[str], **defaults: object) -> Config:
    return Config(models={m: ModelConfig(segment_by=["region"], action="circuit_break") for m in names},
                  defaults=Defaults(**defaults))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def drifting() -> list[tuple[int, bytes]]:
    """One model, six regions; three of them shift together two days before the end."""
    start = END - 48 * HOUR_MS
    sc = Scenario(weeks=5, end_ms=END, rate=40, segments=SEGS,
                  drifts=tuple(Drift(i, start, "shift", shift_abs=0.3) for i in (0, 2, 4)))
    return keyed([sc])


def test_one_partition_decides_as_the_engine(drifting: list[tuple[int, bytes]]) -> None:
    cfg = models(["fraud"])
    engine, want = Engine(cfg), Output()
    raw = [r for _ts, r in drifting]
    for i in range(0, len(raw), 2000):
        want.extend(engine.process([Record(r, None, "in", 0, i + j) for j, r in enumerate(raw[i:i + 2000])]))
    want.extend(engine.finish())
    got = run(cfg, {0: raw})
    assert want.commands and transitions(got) == transitions(want)


def test_the_interleaving_of_partitions_changes_no_decision(drifting: list[tuple[int, bytes]]) -> None:
    cfg = models(["fraud"])
    by = partitioned(drifting, 3)
    assert all(by.values())
    want = run(cfg, by, "round")
    assert want.commands
    for order, seed in (("serial", 0), ("random", 1)):
        assert transitions(run(cfg, by, order, seed=seed)) == transitions(want), order


def test_segments_on_different_partitions_become_one_model_alert(drifting: list[tuple[int, bytes]]) -> None:
    cfg = models(["fraud"], group_min_segments=3)
    by = partitioned(drifting, 3)
    homes = {p for p, raws in by.items() for r in raws if orjson.loads(r)["segment"]["region"] in ("r0", "r2", "r4")}
    assert len(homes) >= 2, "the drifting segments must sit on different partitions for this test"
    out = run(cfg, by)
    group = [a for a in out.alerts if a.segments and a.status == "firing" and a.notify_reason == "new"]
    assert len(group) == 1 and group[0].signal == "prediction"
    assert sorted(s["region"] for s in group[0].segments or []) == ["r0", "r2", "r4"]
    # Per partition, each engine alone saw too few of them to group.
    assert not any(a.segments for a in apart(cfg, by).alerts)


def test_at_most_max_open_breakers_across_all_partitions() -> None:
    start = END - 30 * HOUR_MS
    names = [f"m{i}" for i in range(5)]
    scs = [Scenario(model=m, weeks=5, end_ms=END, rate=30, segments=({"region": f"{m}-r"},),
                    drifts=(Drift(0, start + 2 * i * HOUR_MS, "shift", shift_abs=0.35),)) for i, m in enumerate(names)]
    by = partitioned(keyed(scs), 5)
    out = run(models(names, max_open_breakers=2), by)
    broken: set[str] = set()
    peak = 0
    for c in out.commands:
        if c.action == "circuit_break":
            broken.add(c.model)
        elif c.action == "restore":
            broken.discard(c.model)
        peak = max(peak, len(broken))
    assert peak == 2
    firing = {a.model for a in out.alerts if a.status == "firing" and a.severity == "critical"}
    assert len(firing) >= 3  # more models were broken than the cap lets out of service at once
    # One engine per partition, as the service used to run: each partition had a cap of its own.
    assert len({c.model for c in apart(models(names, max_open_breakers=2), by).commands
                if c.action == "circuit_break"}) > 2


def test_a_challenger_gets_exactly_one_verdict_across_partitions() -> None:
    sc = ShadowConfig(champion="3.1.0", verdict_after=24, publish_verdict=True)
    cfg = Config(models={"fraud": ModelConfig(segment_by=["region"], shadow=sc)}, defaults=Defaults())
    events = keyed([Scenario(weeks=4, end_ms=END, rate=60, segments=SEGS, challenger="3.2.0")], seed=21)
    by = partitioned(events, 3)
    out = run(cfg, by)
    verdicts = [(c.action, c.model_version) for c in out.commands if c.action in ("promote", "reject")]
    assert verdicts == [("promote", "3.2.0")]
    per_partition = [c.action for c in apart(cfg, by).commands if c.action in ("promote", "reject")]
    assert len(per_partition) == 3  # what one engine per partition used to publish


def test_a_report_travels_as_bytes_and_decides_the_same(drifting: list[tuple[int, bytes]],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = models(["fraud"], group_min_segments=3)
    by = partitioned(drifting, 3)
    want = run(cfg, by)
    real = Frontier.report
    sent: list[int] = []

    def through_bytes(self: Frontier, partition: int, r: WindowReport) -> None:
        p, back = decode(encode(partition, r))
        assert p == partition and isinstance(back, WindowReport)
        sent.append(len(r.notes))
        real(self, p, back)

    monkeypatch.setattr(Frontier, "report", through_bytes)
    got = run(cfg, by)
    assert sum(sent) > 0
    assert [a.model_dump_json() for a in got.alerts] == [a.model_dump_json() for a in want.alerts]
    assert [c.model_dump_json() for c in got.commands] == [c.model_dump_json() for c in want.commands]


def test_a_silent_partition_holds_the_frontier_until_it_idles() -> None:
    f = Frontier(partitions=2, idle_after=30.0, now=0.0)
    f.report(0, WindowReport("m", 0, 10))
    f.mark(0, 20, now=1.0)
    assert f.due(now=29.0) == []  # partition 1 has said nothing yet
    assert [(r.model, r.end) for r in f.due(now=31.0)] == [("m", 10)]  # idle now: no longer waited for
    f.report(1, WindowReport("m", 0, 10))  # late: decided on its own
    f.mark(1, 15, now=32.0)
    assert f.late == 1 and [(r.model, r.end) for r in f.due(now=32.0)] == [("m", 10)]


def feed(pipeline: Pipeline, by: dict[int, list[bytes]], chunk: int = 2000) -> Output:
    out, at = Output(), dict.fromkeys(by, 0)
    while any(at[p] < len(by[p]) for p in by):
        for p in by:
            recs = [Record(r, None, "in", p, at[p] + i) for i, r in enumerate(by[p][at[p]:at[p] + chunk])]
            at[p] += len(recs)
            if recs:
                out.extend(pipeline.process(recs))
    return out


def test_every_partition_bins_on_the_edges_the_model_stage_decided(drifting: list[tuple[int, bytes]]) -> None:
    """Flink's broadcast state: each partition proposes its first values, the model stage decides
    the edges once from all of them, and every series task bins on them, so histograms compare."""
    cfg = models(["fraud"])
    by = partitioned(drifting, 3)
    pipeline = Pipeline(cfg, partitions=list(by))
    out = feed(pipeline, by)
    edges = {p: g.engine.models["fraud"].spec.edges.tolist() for p, g in pipeline.guards.items()}  # type: ignore[union-attr]
    decided = pipeline.decisions.edges.decided["fraud"].edges
    assert all(e == decided for e in edges.values()) and len(decided) > 10
    # Each partition alone would have learned edges of its own, which is what sharing prevents.
    alone = Engine(cfg)
    alone.process([Record(r, None, "in", 0, i) for i, r in enumerate(by[0][:5000])])
    assert alone.models["fraud"].spec.edges.tolist() != decided  # type: ignore[union-attr]
    # The windows held for the edges were reported before the frontier passed them: none was late.
    assert pipeline.frontier.late == 0 and out.dead_letters == []
    assert pipeline.stats.windows_closed > 0


def test_a_task_holds_its_windows_until_the_shared_edges_come() -> None:
    """A series task of a stage proposes its sample and closes nothing until ``apply``; its mark
    says which window it holds, and the held window is judged on the series it had when due."""
    from stream.series.task import SeriesTask
    from stream.verdict import Params

    cfg = models(["fraud"])
    sc = Scenario(weeks=1, end_ms=END, rate=40, segments=SEGS[:2])
    raw = [r for _ts, r in keyed([sc])]
    task = SeriesTask(cfg, shared_edges=True)
    task.watermark.assign(0, 0.0)
    out = task.process([Record(r, None, "in", 0, i) for i, r in enumerate(raw[:4000])])
    assert len(out.proposals) == 1 and out.reports == []
    prop = out.proposals[0]
    first = orjson.loads(raw[0])["ts"] // HOUR_MS * HOUR_MS
    assert prop.model == "fraud" and prop.learn_until == first + HOUR_MS + cfg.defaults.allowed_lateness
    before = [e for e in map(orjson.loads, raw[:4000]) if e["ts"] < prop.learn_until]
    assert prop.values == [float(e["prediction"]) for e in before]  # its first values, in stream order
    held = task.held()
    assert held == first + HOUR_MS
    more = task.process([Record(r, None, "in", 0, 4000 + i) for i, r in enumerate(raw[4000:6000])])
    assert more.proposals == [] and more.reports == []  # proposed once; still holding
    task.apply(Params("fraud", [0.1, 0.2, 0.3]))
    got = task.tick()
    assert got.reports and got.reports[0].start == first and task.held() is None
    assert task.models["fraud"].spec.edges.tolist() == [0.1, 0.2, 0.3]  # type: ignore[union-attr]


def test_shared_edges_and_held_windows_survive_a_restart() -> None:
    from stream.series.task import SeriesTask
    from stream.state import dumps, loads

    cfg = models(["fraud"])
    raw = [r for _ts, r in keyed([Scenario(weeks=1, end_ms=END, rate=40, segments=SEGS[:2])])]
    task = SeriesTask(cfg, shared_edges=True)
    task.process([Record(r, None, "in", 0, i) for i, r in enumerate(raw[:4000])])
    back = loads(cfg, dumps(task), cls=SeriesTask)
    m, was = back.models["fraud"], task.models["fraud"]
    assert m.proposed and m.held == was.held and m.held and m.params is None


def test_a_partition_holding_windows_holds_the_frontier_below_them() -> None:
    f = Frontier(partitions=2)
    f.report(0, WindowReport("m", 0, 40))
    f.report(0, WindowReport("m", 40, 80))
    f.mark(0, 100)
    f.mark(1, 100, held=80)  # partition 1 holds its window ending at 80 (waiting for shared edges)
    assert f.progress() == 100 and f.value() == 79
    assert [r.end for r in f.due()] == [40]
    back = Frontier(partitions=2)
    back.restore(f.snapshot(), now=0.0)
    assert back.held == {1: 80}
    f.report(1, WindowReport("m", 40, 80))
    f.mark(1, 100)  # released: its held window was reported first
    assert [r.end for r in f.due()] == [80] and f.late == 0


def test_proposals_marks_and_params_travel_as_bytes() -> None:
    from stream.verdict import Mark, Params, Proposal

    for item in (Proposal("m", 123, [0.5, 1.5]), Mark(99, False, 80), Mark(None, True),
                 Proposal("m", 5, [], {"x": ("numeric", [1.0]), "c": (None, [])})):
        assert decode(encode(3, item)) == (3, item)
    for prm in (Params("m", [0.1, 0.2]), Params("m", None, {"x": ("numeric", [1.0, 2.0]), "c": ("categorical", [])})):
        assert Params.decode(prm.encode()) == prm
    for bad in (b'{"model":"m","edges":[0.2,0.1]}', b'{"model":"m","edges":[]}', b'{"model":"m","edges":[1e999]}',
                b'{"model":"m","edges":null,"features":{"x":["numeric",[]]}}',
                b'{"model":"m","edges":null,"features":{"x":["text",[]]}}'):
        with pytest.raises(ValueError):
            Params.decode(bad)


def test_feature_kinds_and_edges_are_decided_once_for_every_partition() -> None:
    """Two partitions whose feature values differ (and whose first values of ``c`` differ in kind):
    each proposes, the model stage decides once, and both bin every feature on the same kinds and
    edges, counting the events that waited for them (none of a held window's features is lost)."""
    from stream.model.edges import EdgeBook
    from stream.series.task import SeriesTask

    cfg = Config(models={"m": ModelConfig(segment_by=["region"], features=["x", "c", "never"])})
    lateness = cfg.defaults.allowed_lateness
    start = END - END % HOUR_MS
    rng = random.Random(3)

    def event(p: int, i: int, ts: int) -> bytes:
        c: object = ["a", "b"][i % 2] if p == 0 or i > 0 else 7  # partition 1's first `c` is a number
        return orjson.dumps({"event_id": f"{p}-{i}", "model": "m", "ts": ts, "segment": {"region": f"r{p}"},
                             "prediction": rng.random(), "features": {"x": 10.0 * p + rng.random(), "c": c}})

    tasks, book, outs = {}, EdgeBook(lateness), {}
    for p in (0, 1):
        raw = [event(p, i, start + i * 1000) for i in range(900)] + [event(p, 900, start + HOUR_MS + lateness)]
        tasks[p] = SeriesTask(cfg, shared_edges=True)
        tasks[p].watermark.assign(p, 0.0)
        outs[p] = tasks[p].process([Record(r, None, "in", p, i) for i, r in enumerate(raw)])
        assert outs[p].reports == [] and len(outs[p].proposals) == 1  # held: nothing judged before the params
        assert tasks[p].models["m"].features.specs == {"x": None, "c": None, "never": None}  # type: ignore[union-attr]
        book.propose(p, outs[p].proposals[0])
    assert outs[1].proposals[0].features["c"][0] == "numeric" and outs[1].proposals[0].features["never"] == (None, [])
    from stream.state import dumps, loads

    tasks[2] = loads(cfg, dumps(tasks[1]), cls=SeriesTask)  # what waited survives a restart
    [params] = book.due(start + HOUR_MS)
    assert set(params.features) == {"x", "c"} and params.features["c"] == ("numeric", [7.0])  # a tie: numeric
    lo, hi = params.features["x"][1][0], params.features["x"][1][-1]
    assert lo < 1.0 and hi > 10.0  # from both partitions' values together
    for task in tasks.values():
        assert task.apply(params)
        fs = task.models["m"].features
        assert fs is not None and fs.kinds() == ["numeric", "numeric", None]
        assert fs.specs["x"].edges.tolist() == params.features["x"][1]  # type: ignore[union-attr]
        sums = task.models["m"].windows._open[start]
        x = cfg.models["m"].features.index("x")
        assert int(sums.feat[:, x, :].sum()) == 900  # every event of the held window, on the shared edges
        assert task.tick().reports  # and the window is judged now
    back, was = tasks[2].models["m"].store, tasks[1].models["m"].store
    used = len(was.keys)  # slot keys in use (a restored store starts with less room for more)
    assert used and back.keys == was.keys and np.array_equal(back.fhist[:, :used], was.fhist[:, :used])
