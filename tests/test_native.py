"""The compiled batch decoder (native/, stream._native) against the typed msgspec decoder.

Its promise: it accepts only events the typed decoder accepts, and reads them to the same values;
for anything else it declines the batch, which then takes the Python path. A seeded fuzz of
hand-written JSON (number spellings, escapes, key orders, repeats, wrong types) checks both halves,
and engines with it on and off must give the same alerts.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from stream.compiled import _native
from stream.config import Config, Defaults, ModelConfig
from stream.contract import MAX_TS, MIN_TS
from stream.decode import Record
from stream.engine import Engine
from stream.simulate import HOUR_MS, Drift, Scenario, simulate
from stream.typed import Schema, TypedDecoder
from tests.test_engine import END, _alerts, feed

needs_native = pytest.mark.skipif(_native is None and not os.environ.get("CI"),
                                  reason="stream._native is not built (no Rust toolchain at install)")


def test_the_native_decoder_is_built_in_ci() -> None:
    """CI has a Rust toolchain: there the extension must be built, or every test below would be
    exercising nothing."""
    if not os.environ.get("CI") and _native is None:
        pytest.skip("not CI, and no Rust toolchain at install")
    assert _native is not None
    assert TypedDecoder().native == {}  # nothing until a model's schema is set


def _decoders() -> TypedDecoder:
    t = TypedDecoder()
    t.set(Schema("m1", ["country", "channel"], ["a", "b"], ["numeric", "numeric"]))
    t.set(Schema("m2", None, [], []))
    return t


_KEY = {"m1": ("country", "channel")}


def _same(ev: object, col: object, t: TypedDecoder) -> None:
    """The typed event and the native columns of one event say the same."""
    c = col  # a Columns of one event
    assert c.ids == [ev.event_id]  # type: ignore[attr-defined]
    assert c.ts.tolist() == [ev.ts]  # type: ignore[attr-defined]
    pred = ev.prediction  # type: ignore[attr-defined]
    if isinstance(pred, str | dict):  # a text label, or a probability map's top class (the first of equals)
        assert c.labels  # type: ignore[attr-defined]
        want_label = pred if isinstance(pred, str) else max(pred, key=pred.__getitem__)
        assert t.native[c.model].labels()[int(c.prediction[0])] == want_label  # type: ignore[attr-defined]
    else:
        assert not c.labels  # type: ignore[attr-defined]
        want, got = float(pred), float(c.prediction[0])  # type: ignore[attr-defined]
        assert got == want and math.copysign(1, got) == math.copysign(1, want)  # -0 is 0.0, -0.0 is -0.0
    seg = dict(t.native[c.model].segment(int(c.segment[0])))  # type: ignore[attr-defined]
    if c.model in _KEY:  # type: ignore[attr-defined]
        assert seg == dict(zip(_KEY[c.model], msgspec.structs.astuple(ev.segment), strict=True))  # type: ignore[attr-defined]
        feats = [math.nan if v is None else float(v) for v in msgspec.structs.astuple(ev.features)]  # type: ignore[attr-defined]
        row = c.features[0].tolist()  # type: ignore[attr-defined]
        assert [(math.isnan(x), x if not math.isnan(x) else 0) for x in row] == \
            [(math.isnan(x), x if not math.isnan(x) else 0) for x in feats]
    else:
        assert seg == ev.segment  # type: ignore[attr-defined]
    versions = c.versions  # type: ignore[attr-defined]
    assert (versions or [None]) == [ev.model_version]  # type: ignore[attr-defined]


def _number(rng: random.Random) -> str:
    return rng.choice([
        lambda: str(rng.randint(-10**6, 10**6)),
        lambda: repr(rng.uniform(-1e3, 1e3)),
        lambda: f"{rng.uniform(-1, 1):.{rng.randint(1, 17)}f}",
        lambda: f"{rng.uniform(-1, 1):.{rng.randint(1, 17)}e}",
        lambda: f"{rng.uniform(1, 9):.3f}E{rng.randint(-320, 320)}",
        lambda: str(rng.randint(10**15, 10**30)),
        lambda: rng.choice(["0", "-0", "-0.0", "0.0", "1e308", "1e309", "-1e400", "5e-324", "1e-400",
                            "9007199254740993", "18446744073709551615", "18446744073709551616",
                            "0.1", "0.30000000000000004", "123456789012345.6", "1.7976931348623157e308",
                            "00", "01", "1.", ".5", "+1", "1e", "-", "NaN", "Infinity", "0x10", "1_000"]),
    ])()


def _text(rng: random.Random, n: int | None = None) -> str:
    """A JSON string literal, with escapes, multibyte and surrogate pairs now and then."""
    parts = []
    for _ in range(n if n is not None else rng.randint(0, 12)):
        parts.append(rng.choice(["a", "Z", "0", " ", "é", "中", "😀", '\\"', "\\\\", "\\/", "\\n", "\\t",
                                 "\\u00e9", "\\u4e2d", "\\ud83d\\ude00", "\\u0000", "-", "_"]))
    return '"' + "".join(parts) + '"'


def _odd_text(rng: random.Random) -> str:
    return rng.choice(['"\\ud800"', '"\\udc00x"', '"\\x"', '"a\tb"', '"\\u12"', '"abc', "'a'", '"\\ud83d\\u0041"'])


def _value(rng: random.Random, depth: int = 0) -> str:
    """Any JSON value (or, now and then, something that is not)."""
    r = rng.random()
    if r < 0.25:
        return _number(rng)
    if r < 0.45:
        return _text(rng)
    if r < 0.55:
        return rng.choice(["true", "false", "null"])
    if r < 0.6:
        return _odd_text(rng)
    if depth < 3 and r < 0.8:
        return "[" + ",".join(_value(rng, depth + 1) for _ in range(rng.randint(0, 3))) + "]"
    if depth < 3:
        return "{" + ",".join(f"{_text(rng, 2)}:{_value(rng, depth + 1)}" for _ in range(rng.randint(0, 3))) + "}"
    return "null"


def _ws(rng: random.Random) -> str:
    return rng.choice(["", "", "", " ", "\n", "\t ", "\r\n"])


def _obj(rng: random.Random, pairs: list[tuple[str, str]]) -> str:
    w = _ws
    return w(rng) + "{" + ",".join(f"{w(rng)}{k}{w(rng)}:{w(rng)}{v}{w(rng)}" for k, v in pairs) + "}" + w(rng)


def _event(rng: random.Random) -> bytes:
    model = rng.choice(['"m1"', '"m1"', '"m2"', '"m3"', "1", '"m\\u0031"'])
    odd = rng.random() < 0.5  # half the events stay plain, so that most of those are read natively

    def pick(plain: str, other: str) -> str:
        return other if odd and rng.random() < 0.15 else plain

    seg_vals = [('"country"', _text(rng, 2)), ('"channel"', rng.choice(['"web"', '"app"', _text(rng, 1)]))]
    if odd and rng.random() < 0.3:
        seg_vals.append(rng.choice([('"host"', '"h1"'), ('"country"', '"NL"'), ('"channel"', "1"),
                                    ('"x"', _value(rng))]))
    rng.shuffle(seg_vals)
    feats = [('"a"', pick(_number(rng), _value(rng))), ('"b"', pick(rng.choice([_number(rng), "null"]), _value(rng)))]
    if odd and rng.random() < 0.3:
        feats.append(rng.choice([('"c"', _number(rng)), ('"a"', _number(rng)), ('"b"', "true")]))
    if rng.random() < 0.2:
        feats = feats[:1]
    rng.shuffle(feats)
    pairs = [
        ('"event_id"', pick(_text(rng, rng.choice([1, 5, 40])), rng.choice([_text(rng, 0), _text(rng, 256), _text(rng, 257), "7"]))),
        ('"model"', model),
        ('"ts"', pick(str(rng.randint(MIN_TS - 10**11, MAX_TS + 10**11)),
                      rng.choice(["1.0", "1e3", "-0", "1000000000000000", "1000000000000001", '"2026-01-01T00:00:00Z"',
                                  str(2**63), "null", str(MIN_TS), str(MIN_TS - 1), str(MAX_TS), str(MAX_TS - 1),
                                  "1.7951864781e20", "-1000000000000000", "1795716000000.0"]))),
        ('"prediction"', pick(_number(rng), _value(rng))),
        ('"segment"', pick(_obj(rng, seg_vals), rng.choice(["null", "{}", "[]", _value(rng)]))),
        ('"features"', pick(_obj(rng, feats), rng.choice(["null", "{}", _value(rng)]))),
    ]
    if rng.random() < 0.4:
        pairs.append(('"model_version"', pick(_text(rng, 3), rng.choice(["null", "3", _value(rng)]))))
    if rng.random() < 0.3:
        pairs.append(('"label"', _value(rng)))
    if rng.random() < 0.4:
        pairs.append((_text(rng, 4), _value(rng)))
    if odd and rng.random() < 0.2:
        pairs.pop(rng.randrange(len(pairs)))  # a required field missing, now and then
    if odd and rng.random() < 0.1:
        pairs.append(rng.choice(pairs))  # a repeated field
    rng.shuffle(pairs)
    text = _obj(rng, pairs)
    if odd and rng.random() < 0.1:
        text = rng.choice([text[:-3], text + "x", "[" + text + "]", text + text])
    raw = text.encode()
    if odd and rng.random() < 0.05:
        raw = raw.replace("é".encode(), b"\xe9")  # not UTF-8
    return raw


@needs_native
def test_the_native_decoder_accepts_only_what_the_typed_decoder_accepts_and_reads_the_same() -> None:
    rng = random.Random(20261127)
    t = _decoders()
    typed = t.decoder()
    native = refused_both = refused_native_only = 0
    for _ in range(30_000):
        raw = _event(rng)
        got = t.columns([Record(raw)], 65536)
        try:
            ev = typed(raw)
        except (msgspec.MsgspecError, UnicodeDecodeError):
            ev = None
        if got is None:
            if ev is None:
                refused_both += 1
            else:
                refused_native_only += 1
            continue
        assert ev is not None, f"the native decoder accepted what the typed one refuses: {raw!r}"
        assert type(ev).__name__ == "TypedEvent"
        [col] = got
        _same(ev, col, t)
        native += 1
    # Not vacuous: many events read natively, and many refused by both. Those msgspec takes and the
    # native decoder leaves to it are mostly integers beyond 64 bits (frequent in this fuzz); the
    # test below lists the kinds.
    assert native > 4_000 and refused_both > 15_000 and refused_native_only > 0, (native, refused_both)


@needs_native
@pytest.mark.parametrize("raw", [
    b'{"model":"m1","event_id":"a","event_id":"b","ts":1795716000000,"prediction":1}',  # repeated field: msgspec keeps the last
    b'{"model":"m1","event_id":"a","ts":1795716000000,"prediction":100000000000000000000000}',  # beyond 64 bits
    b'{"model":"m1","event_id":"a","ts":1795716000000,"prediction":1,"segment":{"country":"x","country":"y"}}',
    b'{"model":"m1","event_id":"a","ts":1795716000000,"prediction":1,"x":"\xff"}',  # not UTF-8, in a field not read
    b'{"model":"m1","event_id":"a","ts":1795716000000,"prediction":{}}',  # an empty map: the Python path explains
    b'{"model":"m1","event_id":"a","ts":1795716000000,"prediction":{"x":0.5,"x":0.7}}',  # a repeated class
])
def test_what_the_typed_decoder_takes_but_the_native_one_leaves_to_it(raw: bytes) -> None:
    t = _decoders()
    t.decoder()(raw)  # msgspec accepts it ...
    assert t.columns([Record(raw)], 65536) is None  # ... and the native decoder declines the batch


@needs_native
def test_one_event_it_cannot_read_sends_the_whole_batch_the_python_way() -> None:
    t = _decoders()
    good = b'{"model":"m1","event_id":"a","ts":1795716000000,"prediction":1}'
    assert t.columns([Record(good)] * 3, 65536) is not None
    assert t.columns([Record(good), Record(b'{"model":"m1"}'), Record(good)], 65536) is None
    assert t.columns([Record(good), Record(None)], 65536) is None
    assert t.columns([Record(good)], max_bytes=len(good) - 1) is None


def _numeric_events(regions: tuple[str, ...], rate: int, drifted: int, seed: int) -> list[dict[str, Any]]:
    """Simulated events of model "fraud", one region drifting for the last 50 hours, with only the
    numeric features f00.. (the ones ``_config`` monitors)."""
    sc = Scenario(weeks=5, end_ms=END, rate=rate, segments=tuple({"region": r} for r in regions),
                  correlated_features=3, drifts=(Drift(drifted, END - 50 * HOUR_MS, "shift", 1.5),))
    out = []
    for e in simulate(sc, seed=seed):
        e["features"] = {k: v for k, v in e["features"].items() if k.startswith("f")}  # type: ignore[union-attr]
        out.append(e)
    return out


def batches(engine: Engine, decoder: str) -> float:
    """Batches an engine decoded with this decoder ("native" or "python")."""
    return engine.metrics.registry.get_sample_value("driftline_batches_decoded_total", {"decoder": decoder}) or 0.0


def _config(native: bool) -> Config:
    return Config(models={"fraud": ModelConfig(segment_by=["region"], features=["f00", "f01", "f02"],
                                               action="circuit_break"),
                          "churn": ModelConfig(features=["f00"])},
                  defaults=Defaults(native_decoder=native))


@needs_native
def test_engines_with_and_without_the_native_decoder_give_the_same_alerts() -> None:
    """Two models in one stream, drifts, late and repeated events in the middle: the alerts, dead
    letters and counts must be the same event for event, and most batches must have gone natively."""
    raw = []
    for e in _numeric_events(("eu", "us", "apac"), rate=40, drifted=1, seed=7):
        raw.append(orjson.dumps(e))
        if e["event_id"].endswith("7"):  # another model on the same topic, no segment_by
            raw.append(orjson.dumps({**e, "model": "churn", "segment": {"plan": "pro"},
                                     "features": {"f00": e["features"]["f00"]}}))  # type: ignore[index]
    mid = len(raw) // 2
    raw[mid:mid] = [raw[mid - 5], raw[10]]  # a repeat in an open window, and a late event
    on, off = Engine(_config(True)), Engine(_config(False))
    a, b = feed(on, raw, chunk=2000), feed(off, raw, chunk=2000)
    assert [x for x in a.alerts if x.status == "firing"], "the drifted segment must alert"
    assert _alerts(a) == _alerts(b)
    assert [(d.reason, d.record.offset) for d in a.dead_letters] == [(d.reason, d.record.offset) for d in b.dead_letters]
    assert {d.reason for d in a.dead_letters} == {"duplicate", "late"}
    assert on.stats == off.stats
    assert off.typed.native == {}
    assert len(on.typed.native["fraud"]) == 3 and len(on.typed.native["churn"]) == 1

    # the counter operators watch for a producer that sends every batch the slow way
    assert batches(off, "native") == 0 and batches(off, "python") == math.ceil(len(raw) / 2000)
    assert batches(on, "native") + batches(on, "python") == batches(off, "python")
    assert batches(on, "native") > batches(on, "python")  # the python ones: learning kinds, and the odd batches


@needs_native
def test_a_replayed_file_gives_the_same_alerts_and_dead_letters_with_and_without_it(tmp_path: Path) -> None:
    """Replay hands plain blocks of lines to the native decoder whole (no bytes object per line); a
    block with a bad line, a blank line or a CR goes line by line. Same output either way."""
    from stream.replay import replay

    lines = [orjson.dumps(e) for e in _numeric_events(("eu", "us"), rate=30, drifted=0, seed=3)]
    for at, odd in ((5000, b'{"model":"fraud"'), (9000, b""), (12000, lines[11990] + b"\r"), (15000, b"  ")):
        lines.insert(at, odd)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    outs = []
    for native in (True, False):
        alerts, dead = tmp_path / f"alerts-{native}.jsonl", tmp_path / f"dead-{native}.jsonl"
        with alerts.open("wb") as a, dead.open("wb") as d:
            result = replay(path, _config(native), alerts_out=a, dead_out=d)
        outs.append((result.events, alerts.read_bytes(), dead.read_bytes()))
    assert outs[0] == outs[1]
    assert outs[0][1].count(b'"firing"') >= 1
    assert [orjson.loads(x)["line"] for x in outs[0][2].splitlines()] == [5001, 12001]  # malformed, duplicate


@needs_native
@pytest.mark.parametrize(("text", "value"), [(b"-0", 0.0), (b"-0.0", -0.0), (b"0", 0.0), (b"-0e0", -0.0)])
def test_zero_reads_as_msgspec_reads_it(text: bytes, value: float) -> None:
    """The integer -0 is the integer 0, so the float 0.0; the float -0.0 keeps its sign."""
    t = _decoders()
    raw = b'{"model":"m1","event_id":"a","ts":1795716000000,"prediction":%s,"features":{"a":%s}}' % (text, text)
    [c] = t.columns([Record(raw)], 65536) or []
    ev = t.decoder()(raw)
    for got in (float(c.prediction[0]), float(c.features[0][0])):
        assert got == value and math.copysign(1, got) == math.copysign(1, value) == math.copysign(1, ev.prediction)


def _small(model: str, i: int, ts: int, seg: str = "x") -> bytes:
    return orjson.dumps({"model": model, "event_id": f"{model}{i}{seg}", "ts": ts, "prediction": 0.5, "segment": {"r": seg}})


def _both(batches: list[list[bytes]]) -> list[tuple[Engine, list[tuple[str, int]]]]:
    """Engines with and without the native decoder fed the same batches, and their dead letters."""
    runs = []
    for native in (True, False):
        e = Engine(Config(models={"a": ModelConfig(), "b": ModelConfig()}, defaults=Defaults(native_decoder=native)))
        dead = []
        for batch in batches:
            out = e.process([Record(r, None, "in", 0, i) for i, r in enumerate(batch)])
            dead += [(d.reason, d.record.offset) for d in out.dead_letters]
        runs.append((e, dead))
    return runs


@needs_native
def test_late_events_of_two_models_are_dead_lettered_in_batch_order_on_both_paths() -> None:
    t0 = END - 10 * HOUR_MS
    (_, on), (_, off) = _both([[_small("a", 1, t0), _small("b", 1, t0), _small("a", 2, t0 + 3 * HOUR_MS),
                                _small("b", 2, t0 + 3 * HOUR_MS)],
                               [_small("b", 3, t0), _small("a", 3, t0)]])
    assert on == off == [("late", 0), ("late", 1)]


@needs_native
def test_new_series_are_numbered_in_event_order_on_both_paths() -> None:
    """Segments the native decoder saw earlier (on late events, which make no series) must not
    jump the queue when their series are made."""
    t0 = END - 10 * HOUR_MS
    (on, on_dead), (off, off_dead) = _both([[_small("a", 1, t0, "z"), _small("a", 2, t0 + 3 * HOUR_MS, "z")],
                                            [_small("a", 3, t0, "x"), _small("a", 4, t0, "y")],
                                            [_small("a", 5, t0 + 3 * HOUR_MS, "y"), _small("a", 6, t0 + 3 * HOUR_MS, "x")]])
    assert on.series_key == off.series_key == ["r=z", "r=y", "r=x"]
    assert on_dead == off_dead == [("late", 0), ("late", 1)]


@needs_native
def test_text_predictions_and_probability_maps_are_read_natively_as_labels() -> None:
    t = _decoders()
    rows = [b'{"model":"m1","event_id":"%d","ts":1795716000000,"prediction":%s}' % (i, p) for i, p in enumerate(
        [b'"fraud"', b'{"ok":0.2,"fraud":0.8}', b'{"ok":0.5,"fraud":0.5}', b'"ok"', b'{"x":1}'])]
    [c] = t.columns([Record(r) for r in rows], 65536) or []
    names = t.native["m1"].labels()
    assert c.labels and [names[i] for i in c.prediction.tolist()] == ["fraud", "fraud", "ok", "ok", "x"]
    # numbers and text for one model in one batch: the Python path dead-letters the odd ones out
    mixed = [rows[0], b'{"model":"m1","event_id":"n","ts":1795716000000,"prediction":0.5}']
    assert t.columns([Record(r) for r in mixed], 65536) is None


@needs_native
def test_a_classifier_gives_the_same_alerts_with_and_without_the_native_decoder() -> None:
    """Text predictions and probability maps, drifting on one segment: same alerts either way."""
    raw = []
    for i, e in enumerate(_numeric_events(("eu", "us", "apac"), rate=40, drifted=1, seed=9)):
        p = float(e["prediction"])
        label = "high" if p > 0.6 else "mid" if p > 0.3 else "low"
        e["prediction"] = label if i % 2 else {"low": round(1 - p, 4), "high": round(p, 4)}
        raw.append(orjson.dumps(e))
    on, off = Engine(_config(True)), Engine(_config(False))
    a, b = feed(on, raw, chunk=2000), feed(off, raw, chunk=2000)
    assert [x for x in a.alerts if x.status == "firing"], "the drifted segment must alert"
    assert _alerts(a) == _alerts(b)
    assert on.stats == off.stats
    assert on.models["fraud"].spec is not None and on.models["fraud"].spec.kind == "categorical"
    assert sorted(on.typed.native["fraud"].labels()) == ["high", "low", "mid"]
    assert batches(on, "native") > batches(on, "python")


@needs_native
def test_text_features_read_as_msgspec_reads_them() -> None:
    """A text feature takes strings and bools (as "true"/"false"); null or absent is NaN; a number
    for it is wrong-typed, which the general path counts as null: the native decoder declines."""
    t = TypedDecoder()
    t.set(Schema("m", ["c"], ["tier", "x"], ["categorical", "numeric"]))
    typed = t.decoder()
    cases = [b'"gold"', b'true', b'false', b'null', b'"\\u00e9t\\u00e9"', b'""']
    rows = [b'{"model":"m","event_id":"%d","ts":1795716000000,"prediction":1,"features":{"tier":%s,"x":2}}' % (i, v)
            for i, v in enumerate(cases)]
    rows.append(b'{"model":"m","event_id":"n","ts":1795716000000,"prediction":1,"features":{"x":3}}')  # absent
    [c] = t.columns([Record(r) for r in rows], 65536) or []
    names = t.native["m"].feature_labels()
    got = [None if v != v else names[int(v)] for v in c.features[:, 0].tolist()]
    want = [typed(r).features.f0 for r in rows]
    assert got == [("true" if w else "false") if isinstance(w, bool) else w for w in want]
    assert got == ["gold", "true", "false", None, "été", "", None]
    assert c.features[:, 1].tolist() == [2.0] * 6 + [3.0]
    for odd in (b'1', b'1.5', b'{}', b'[]'):
        raw = b'{"model":"m","event_id":"o","ts":1795716000000,"prediction":1,"features":{"tier":%s}}' % odd
        assert t.columns([Record(raw)], 65536) is None


@needs_native
def test_a_model_with_a_text_feature_gives_the_same_alerts_with_and_without_the_native_decoder() -> None:
    segs = tuple({"region": r} for r in ("eu", "us", "apac"))
    sc = Scenario(weeks=5, end_ms=END, rate=40, segments=segs, correlated_features=2,
                  drifts=(Drift(1, END - 50 * HOUR_MS, "shift", 1.5),))
    raw = [orjson.dumps(e) for e in simulate(sc, seed=5)]
    assert b'"tier":"' in raw[0]

    def config(native: bool) -> Config:
        return Config(models={"fraud": ModelConfig(segment_by=["region"], features=["amount", "tier", "f00", "f01"],
                                                   action="circuit_break")},
                      defaults=Defaults(native_decoder=native))

    on, off = Engine(config(True)), Engine(config(False))
    a, b = feed(on, raw, chunk=2000), feed(off, raw, chunk=2000)
    assert [x for x in a.alerts if x.status == "firing"], "the drifted segment must alert"
    assert _alerts(a) == _alerts(b)
    assert on.stats == off.stats
    assert on.typed.schemas["fraud"].kinds == ("numeric", "categorical", "numeric", "numeric")
    assert on.typed.native["fraud"].feature_labels(), "the text feature went through the native decoder"
    assert batches(on, "native") > batches(on, "python")


_LONG = [
    {"segment": {"country": "x" * 257}},
    {"segment": {f"k{i}": "v" for i in range(33)}},
    {"prediction": "y" * 257},
    {"prediction": {f"c{i}": 0.001 for i in range(1025)}},
    {"prediction": {"a" * 257: 0.5, "b": 0.5}},
    {"model_version": "v" * 257},
    {"features": {"tier": "t" * 257}},
    {"segment": {"country": "é" * 257}},  # characters, not bytes, are counted
]


@pytest.mark.parametrize("extra", _LONG, ids=[str(i) for i in range(len(_LONG))])
def test_text_and_maps_beyond_their_bounds_are_the_same_dead_letter_on_both_paths(extra: dict[str, Any]) -> None:
    from stream.contract import MAX_TEXT

    raw = orjson.dumps({"event_id": "long", "model": "fraud", "ts": END, "prediction": 0.5, **extra})
    good = orjson.dumps({"event_id": "ok", "model": "fraud", "ts": END, "prediction": 0.5, "features": {"tier": "gold"}})
    got = []
    for native in (True, False):
        engine = Engine(Config(models={"fraud": ModelConfig(features=["tier"])}, defaults=Defaults(native_decoder=native)))
        assert engine.process([Record(good, None, "in", 0, 0)]).dead_letters == []
        if native:  # the compiled decoder leaves it to the Python path, which explains
            assert engine.typed.columns([Record(raw, None, "in", 0, 1)], 65536) is None
        out = engine.process([Record(raw, None, "in", 0, 1)])
        got.append([(d.reason, d.detail) for d in out.dead_letters])
    assert got[0] == got[1] and [r for r, _d in got[0]] == ["invalid_event"]
    # and just within the bounds, it is an event
    ok = orjson.dumps({"event_id": "edge", "model": "fraud", "ts": END, "prediction": "y" * MAX_TEXT,
                       "segment": {"country": "é" * MAX_TEXT}, "model_version": "v" * MAX_TEXT})
    engine = Engine(Config(models={"fraud": ModelConfig()}))
    assert engine.process([Record(ok, None, "in", 0, 0)]).dead_letters == []
    assert engine.typed.columns([Record(ok, None, "in", 0, 0)], 65536) is not None
