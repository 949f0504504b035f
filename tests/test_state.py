"""State snapshot and restore: a restored engine continues exactly like one that never stopped."""

from __future__ import annotations

import re

import orjson
import pytest

from stream.config import Config, ModelConfig
from stream.decode import Record
from stream.engine import Engine, Output
from stream.simulate import HOUR_MS, Drift, Scenario, simulate
from stream.state import MAGIC, StateError, dumps, from_records, loads, records

END = 1795716000000


def run(engine: Engine, raw: list[bytes], start: int, chunk: int = 3000) -> Output:
    out = Output()
    for i in range(start, len(raw), chunk):
        out.extend(engine.process([Record(r, None, "in", 0, i + j) for j, r in enumerate(raw[i:i + chunk])]))
    return out


def outputs(out: Output) -> list[bytes]:
    return [a.model_dump_json().encode() for a in out.alerts] + [c.model_dump_json().encode() for c in out.commands]


def test_restore_mid_stream_gives_the_same_alerts_and_commands() -> None:
    segs = tuple({"region": f"r{i}"} for i in range(4))
    sc = Scenario(weeks=5, end_ms=END, rate=60, segments=segs, correlated_features=3,
                  drifts=(Drift(1, END - 3 * 24 * HOUR_MS, "shift", 1.0), Drift(2, END - 2 * 24 * HOUR_MS, "volume", 0.2)))
    raw = [orjson.dumps(e) for e in simulate(sc, seed=12)]
    cfg = Config(models={"fraud": ModelConfig(action="circuit_break", features=["f00", "f01", "f02", "tier", "amount"])})
    cut = (len(raw) * 9 // 10) // 3000 * 3000  # during the drifts, at a batch boundary

    whole = Engine(cfg)
    run(whole, raw[:cut], 0)
    expected = run(whole, raw, cut)

    first = Engine(cfg)
    run(first, raw[:cut], 0)
    blob = dumps(first)
    assert b"pickle" not in blob and blob.startswith(MAGIC) and blob[8:9] == b"{"  # magic, length, JSON header
    resumed = loads(cfg, blob)
    got = run(resumed, raw, cut)

    assert expected.alerts, "the scenario must produce alerts after the cut"
    assert outputs(got) == outputs(expected)
    assert resumed.stats == whole.stats


def test_changed_records_merged_like_a_compacted_topic_restore_exactly() -> None:
    """The service writes only the records that changed each transaction; the latest record per
    name (what a compacted topic keeps) restores an engine that continues like the original."""
    segs = tuple({"region": f"r{i}"} for i in range(3))
    sc = Scenario(weeks=4, end_ms=END, rate=40, segments=segs, drifts=(Drift(1, END - 2 * 24 * HOUR_MS, "shift", 1.0),))
    raw = [orjson.dumps(e) for e in simulate(sc, seed=5)]
    cfg = Config(models={"fraud": ModelConfig(features=["f00", "tier"])})
    cut = (len(raw) * 9 // 10) // 2000 * 2000

    whole = Engine(cfg)
    run(whole, raw[:cut], 0, chunk=2000)
    expected = run(whole, raw, cut, chunk=2000)

    first = Engine(cfg)
    topic: dict[str, bytes] = {}
    sizes = []
    for i in range(0, cut, 2000):
        run(first, raw[i:i + 2000], 0, chunk=2000)
        changed = records(first)
        sizes.append(len(changed))
        topic.update(changed)
    assert max(sizes[len(sizes) // 2:]) < len(topic) / 4, "later transactions write a few columns, not all"
    # another engine's column records (read after ours, so they would overwrite them) are ignored
    stale = Engine(cfg)
    run(stale, raw[:4000], 0)
    old = {k + "-old": v for k, v in records(stale, changed_only=False).items() if k != "meta"}
    assert old
    topic.update(old)
    resumed = from_records(cfg, topic)
    got = run(resumed, raw, cut, chunk=2000)
    assert expected.alerts and outputs(got) == outputs(expected)


@pytest.mark.parametrize("blob", [b"not json", b'{"version": 99}', b'{"version": 1}', b"[]", MAGIC + b"\x05\x00\x00\x00[1,2]",
                                  MAGIC + b"\x02\x00\x00\x00{}", MAGIC + b"\xff\x00\x00\x00{"])
def test_bad_state_fails_clearly(blob: bytes) -> None:
    with pytest.raises(StateError):
        loads(Config(models={"m": ModelConfig()}), blob)


def test_truncated_or_padded_arrays_fail_clearly() -> None:
    """The arrays' bytes are input too: a short or long tail is refused, not reshaped."""
    cfg = Config(models={"fraud": ModelConfig()})
    raw = [orjson.dumps(e) for e in simulate(Scenario(weeks=1, end_ms=END, rate=20), seed=3)]
    engine = Engine(cfg)
    run(engine, raw, 0)
    blob = dumps(engine)
    assert loads(cfg, blob).stats == engine.stats
    for bad in (blob[:-10], blob + b"\x00" * 8):
        with pytest.raises(StateError):
            loads(cfg, bad)


def test_a_store_whose_shape_names_more_features_than_it_lists_is_refused() -> None:
    """Found by the state fuzz target: a feature axis of 6 for 3 listed features restored, then
    made the first fold raise. The shapes must add up at restore."""
    cfg = Config(models={"fraud": ModelConfig(features=["amount", "tier", "f00"])})
    raw = [orjson.dumps({"event_id": f"s{i}", "model": "fraud", "ts": END - 7200_000 + i * 1000, "prediction": 0.1,
                         "features": {"amount": i, "tier": "gold", "f00": 0.5}}) for i in range(3000)]
    engine = Engine(cfg)
    run(engine, raw, 0)
    blob = dumps(engine)
    loads(cfg, blob)
    bad, n = re.subn(rb'("fsize":\[0,0,0\],"shape":\[\d+,)3,', rb"\g<1>6,", blob)
    assert n == 1
    with pytest.raises(StateError, match="feature shapes"):
        loads(cfg, bad)


def test_restore_under_a_config_with_other_features_keeps_going() -> None:
    """A feature dropped from the config and one added: the restored engine carries on."""
    segs = tuple({"region": f"r{i}"} for i in range(2))
    raw = [orjson.dumps(e) for e in simulate(Scenario(weeks=3, end_ms=END, rate=40, segments=segs, correlated_features=2), seed=9)]
    half = len(raw) // 2
    first = Engine(Config(models={"fraud": ModelConfig(features=["f00", "f01"])}))
    run(first, raw[:half], 0)
    cfg = Config(models={"fraud": ModelConfig(features=["f01", "tier"])})
    resumed = loads(cfg, dumps(first))
    run(resumed, raw, half)
    resumed.finish()
    assert resumed.stats.processed + resumed.stats.dead_lettered == len(raw)
    assert resumed.stats.windows_closed > first.stats.windows_closed


def test_a_model_removed_and_added_back_does_not_spoil_the_partition_state() -> None:
    """Its old column records stay in the topic; the re-added model's new store ignores them."""
    from stream.decode import Record as R

    n = [0]

    def ev(model: str, ts: int, k: int = 40) -> list[R]:
        out = []
        for i in range(k):
            n[0] += 1
            body = {"event_id": f"e{n[0]}", "model": model, "ts": ts + i, "segment": {"s": "x"}, "prediction": "a"}
            out.append(R(orjson.dumps(body), None, "in", 0, n[0]))
        return out

    both, a_only = Config(models={"a": ModelConfig(), "b": ModelConfig()}), Config(models={"a": ModelConfig()})
    e = Engine(both)
    for h in range(6):
        e.process(ev("a", END + h * HOUR_MS) + ev("b", END + h * HOUR_MS))
    topic = dict(records(e))
    e2 = from_records(a_only, topic)
    for h in range(6, 8):
        e2.process(ev("a", END + h * HOUR_MS))
    topic.update(records(e2))
    e3 = from_records(both, topic)
    assert e3.models["a"].store.keys == e2.models["a"].store.keys
    assert len(e3.models["b"].store.keys) == 0  # a new store: b's old columns are not its own
    e3.process(ev("b", END + 8 * HOUR_MS) + ev("a", END + 9 * HOUR_MS))


def test_state_records_are_zstd_and_records_written_with_zlib_still_read() -> None:
    import zlib

    from stream.framing import compress, decompress

    record = b"DLS" + bytes(5000) + b"tail"
    packed = compress(record)
    assert packed[:4] == b"\x28\xb5\x2f\xfd" and len(packed) < 200
    assert decompress(packed) == record
    assert decompress(zlib.compress(record, 1)) == record  # state written by an earlier version
    with pytest.raises(StateError, match="does not decompress"):
        decompress(b"\x28\xb5\x2f\xfd garbage")
    with pytest.raises(StateError):
        decompress(b"not compressed at all")


def test_a_monitored_feature_added_to_the_config_keeps_the_state_and_the_pairs_it_had() -> None:
    """Adding a feature must not throw the partition's whole state away: the correlation sums of the
    features both configs know come along, by name."""
    import numpy as np



    def cfg(features: list[str]) -> Config:
        return Config(models={"m": ModelConfig(features=features)})

    e = Engine(cfg(["a", "b"]))
    raw = [orjson.dumps({"event_id": f"x{i}", "model": "m", "ts": 1795716000000 + i, "prediction": 0.5,
                         "features": {"a": float(i % 50), "b": float(i % 50) * 2}}) for i in range(2000)]
    e.process([Record(r, None, "in", 0, i) for i, r in enumerate(raw)])
    before = e.models["m"].features
    assert before is not None and before._cnt[0, 1] > 0
    after = loads(cfg(["c", "a", "b"]), dumps(e)).models["m"].features
    assert after is not None and after.names == ["c", "a", "b"]
    assert after._cross[1, 2] == before._cross[0, 1] and after._cnt[1, 2] == before._cnt[0, 1]
    assert np.all(after._cnt[0] == 0)
