"""The ``driftline`` command line (also ``python -m stream``)."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import time
from pathlib import Path

import orjson

from .config import Config, ConfigError, load_config


def _config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config) if getattr(args, "config", None) else load_config(None)
    if getattr(args, "bootstrap", None):
        cfg.kafka.bootstrap_servers = args.bootstrap
    if getattr(args, "metrics_port", None) is not None:
        cfg.metrics.port = args.metrics_port
    return cfg


def tune_gc() -> None:
    """Collect garbage less often in a long-running stream processor.

    Every consumed record is a tracked tuple, so the default thresholds run a collection every 700
    allocations, and each older-generation pass walks the whole state: about 20% of replay time here
    (BENCHMARKS.md). The state is arrays and dicts without cycles; startup objects are frozen out of
    the collector's sight and young collections run 70 times less often.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def cmd_run(args: argparse.Namespace) -> int:
    from .service import Service

    cfg = _config(args)
    service = Service(cfg)
    tune_gc()
    service.install_signal_handlers()
    port = service.serve_metrics()
    print(f"driftline: consuming {cfg.kafka.input_topic} on {cfg.kafka.bootstrap_servers} "
          f"as group {cfg.kafka.group_id}; metrics on http://{cfg.metrics.host}:{port}/metrics", flush=True)
    s = service.run(idle_exit=args.idle_exit)
    print(f"driftline: stopped after {s.seconds:.1f}s: consumed {s.consumed}, processed {s.processed}, "
          f"dead-lettered {s.dead_lettered}, windows closed {s.windows_closed}, alerts {s.alerts}, "
          f"commands {s.commands}", flush=True)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import replay, replay_kafka
    from .report import BacktestReport, Progress

    if bool(args.events) == bool(args.topic):
        raise SystemExit("replay: give either an events file or --topic (with --from for a start time)")
    since = None
    if args.since:
        try:
            since = _time_ms(args.since)
        except ValueError as exc:
            raise SystemExit(f"replay: --from {args.since!r}: {exc}") from None
    cfg = _config(args)
    tune_gc()
    report = BacktestReport()
    progress = Progress(force=args.progress)
    alerts = open(args.alerts, "wb") if args.alerts else None  # noqa: SIM115
    commands = open(args.commands, "wb") if args.commands else None  # noqa: SIM115
    dead = open(args.dead_letters, "wb") if args.dead_letters else None  # noqa: SIM115
    try:
        if args.topic:
            r = replay_kafka(_bootstrap_or_local(args), args.topic, since, cfg, alerts, commands, dead, report, progress)
        else:
            r = replay(Path(args.events), cfg, alerts, commands, dead, report=report, progress=progress)
    finally:
        for fh in (alerts, commands, dead):
            if fh is not None:
                fh.close()
    print(f"replayed {r.events} events in {r.seconds:.2f}s ({r.events_per_second:,.0f}/s): processed {r.processed}, "
          f"dead-lettered {r.dead_lettered} {dict(r.by_reason) or ''}")
    print(report.text())
    if args.report:
        Path(args.report).write_text(report.html(f"driftline backtest of {args.topic or args.events}"))
        print(f"report written to {args.report}")
    return 0


def _time_ms(text: str) -> int:
    """A start time: RFC 3339, epoch milliseconds, or an age like ``7d`` / ``12h`` before now."""
    from .config import parse_duration
    from .contract import _to_epoch_ms

    text = text.strip()
    if text.isdigit():
        return int(text)
    if text[-1:] in "smhdw" and text[:1].isdigit():
        return int(time.time() * 1000) - parse_duration(text)
    return _to_epoch_ms(text)


def cmd_broker(args: argparse.Namespace) -> int:
    from . import broker

    state = Path(args.state_dir) if args.state_dir else None
    if args.action == "start":
        info = broker.start(state, heap=args.heap)
        print(f"kafka {broker.KAFKA_VERSION} pid {info.pid}, data {info.data_dir}, log {info.log_file}")
        print(info.bootstrap)
        return 0
    if args.action == "restart":
        info = broker.restart(state)
        print(f"kafka restarted: pid {info.pid}")
        print(info.bootstrap)
        return 0
    if args.action == "status":
        running = broker.status(state)
        if running is None:
            print("not running")
            return 1
        print(f"running: pid {running.pid}, data {running.data_dir}")
        print(running.bootstrap)
        return 0
    print("stopped" if broker.stop(state) else "not running")
    return 0


def _bootstrap_or_local(args: argparse.Namespace) -> str:
    if getattr(args, "bootstrap", None):
        return str(args.bootstrap)
    if getattr(args, "config", None):
        return load_config(args.config).kafka.bootstrap_servers
    from . import broker

    info = broker.status()
    if info is None:
        raise SystemExit("no --bootstrap given and no local broker running (driftline broker start)")
    return info.bootstrap


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain_text, find_alert, render_png, write_page

    if args.alerts:
        lines: list[bytes] = Path(args.alerts).read_bytes().splitlines()
    else:
        from .topics import read_topic

        lines = [rec[1] for rec in read_topic(_bootstrap_or_local(args), args.topic, timeout=args.timeout)]
    alert = find_alert(lines, args.alert_id)
    if alert is None:
        print(f"alert {args.alert_id} not found", file=sys.stderr)
        return 1
    print(explain_text(alert))
    page = Path(args.out) if args.out else None
    if args.png and page is None:
        page = Path(args.png).with_suffix(".html")
    if page is not None:
        print(f"page written to {write_page(alert, page)}")
    if args.png:
        try:
            print(f"picture written to {render_png(page, Path(args.png))}")  # type: ignore[arg-type]
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


def cmd_subscribe(args: argparse.Namespace) -> int:
    from .contract import Command
    from .subscriber import BreakerBook, ControlSubscriber

    def show(cmd: Command, book: BreakerBook) -> None:
        state = "OPEN (stop serving)" if book.is_open(cmd.model) else "closed (serving)"
        print(f"{cmd.command_id} {cmd.action} {cmd.model}: {cmd.reason.summary} -> breaker {state}", flush=True)

    cfg = load_config(args.config)  # also reads DRIFTLINE_COMMANDS__SIGNING_KEY
    topic = args.topic or cfg.kafka.control_topic
    clock = time.time
    if args.at:
        try:
            at = _time_ms(args.at) / 1000
        except ValueError as exc:
            raise SystemExit(f"subscribe: --at {args.at!r}: {exc}") from None
        clock = lambda: at  # noqa: E731
    sub = ControlSubscriber(_bootstrap_or_local(args), {args.model}, show, topic=topic, signing_key=cfg.commands.key(),
                            clock=clock)
    deadline = time.monotonic() + args.seconds if args.seconds else None
    try:
        while deadline is None or time.monotonic() < deadline:
            sub.poll(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
    for outcome, what in sub.ignored:
        print(f"ignored {outcome}: {what}")
    print(f"{args.model}: breaker {'OPEN' if sub.book.is_open(args.model) else 'closed'}")
    return 0


def cmd_operate(args: argparse.Namespace) -> int:
    """``driftline accept`` / ``driftline silence``: an operator's command to the running service,
    signed with the config's signing key, on the operator topic (created if missing)."""
    import getpass
    import uuid

    from confluent_kafka import Producer

    from .act import sign
    from .config import parse_duration
    from .consume import client_settings
    from .contract import Operation
    from .publish import ensure_topics

    cfg = _config(args)
    segments = []
    for spec in getattr(args, "segment", None) or []:
        pairs = [p.partition("=") for p in spec.split(",")]
        if any(not k or not eq for k, eq, _v in pairs):
            raise ConfigError(f"--segment {spec!r}: give key=value pairs, comma-separated (country=US,channel=web)")
        segments.append({k.strip(): v.strip() for k, _eq, v in pairs})
    try:
        duration = parse_duration(args.duration) if args.action == "silence" and args.duration.strip() != "0" else 0
    except ValueError as exc:
        raise ConfigError(f"--for {args.duration!r}: {exc}") from None
    op = Operation(command_id=f"o-{uuid.uuid4().hex[:20]}", model=args.model, action=args.action, segments=segments,
                   duration_ms=duration, issued_at=int(time.time() * 1000), by=args.by or getpass.getuser(),
                   note=args.note or "")
    key = cfg.commands.key()
    if key is not None:
        op = sign(op, key)
    ensure_topics(cfg.kafka)
    producer = Producer({**client_settings(cfg.kafka), "enable.idempotence": True})
    producer.produce(cfg.kafka.operator(), key=op.model.encode(), value=op.model_dump_json().encode())
    if producer.flush(30) != 0:
        print(f"driftline: {args.action} for {args.model} not delivered to {cfg.kafka.operator()}", file=sys.stderr)
        return 1
    what = (f"silence {args.model} for {args.duration}" if args.action == "silence" and duration
            else f"end the silence of {args.model}" if args.action == "silence"
            else f"accept the drift of {args.model} as the new normal ({len(segments) or 'every'} segments)")
    print(f"{op.command_id}: {what}{' (signed)' if key else ''}, on {cfg.kafka.operator()}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from .contract import json_schemas

    schemas = json_schemas()
    if args.write:
        out = Path(args.write)
        out.mkdir(parents=True, exist_ok=True)
        for name, schema in schemas.items():
            (out / name).write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
            print(out / name)
        return 0
    sys.stdout.write(orjson.dumps(schemas, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate import HOUR_MS, Scenario, encode, simulate

    end = None
    sc0 = Scenario(model=args.model, weeks=args.weeks, rate=args.rate)
    if args.drift_hours:
        end = int(time.time() * 1000) // HOUR_MS * HOUR_MS
        sc0 = Scenario(model=args.model, weeks=args.weeks, rate=args.rate, end_ms=end,
                       drift_segment=args.drift_segment, drift_start_ms=end - args.drift_hours * HOUR_MS,
                       drift_shift=args.drift_shift)
    if not args.out and not args.topic:
        raise SystemExit("simulate: give --out FILE, --topic TOPIC (with --bootstrap), or both")
    from .engine import segment_key

    raw = list(simulate(sc0, seed=args.seed))
    events = [encode(event) for event in raw]
    if args.out:
        with open(args.out, "wb") as fh:
            fh.writelines(e + b"\n" for e in events)
        print(f"wrote {len(events)} events to {args.out}")
    if args.topic:
        from .topics import create_topic, produce

        bootstrap = _bootstrap_or_local(args)
        create_topic(bootstrap, args.topic, partitions=args.partitions)
        # Keyed by model and segment: a segment's events stay in order on one partition.
        keyed = [(f"{ev['model']}|{segment_key(ev['segment'])}".encode(), e)  # type: ignore[arg-type]
                 for ev, e in zip(raw, events, strict=True)]
        print(f"produced {produce(bootstrap, args.topic, keyed)} events to {args.topic} at {bootstrap}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(bootstrap=args.bootstrap, weeks=args.weeks, out_dir=Path(args.out_dir))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="driftline", description=__doc__)
    p.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="the long-running consumer service")
    r.add_argument("--config", required=True)
    r.add_argument("--bootstrap", help="override kafka.bootstrap_servers")
    r.add_argument("--metrics-port", type=int, help="override metrics.port (0 = any free port)")
    r.add_argument("--idle-exit", type=float, help="stop after this many seconds without input (demos, tests)")
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser("replay", help="backtest: the engine over a JSONL file or a topic's history")
    rp.add_argument("events", nargs="?", help="JSONL file of events (or use --topic)")
    rp.add_argument("--config", required=True)
    rp.add_argument("--topic", help="replay this Kafka topic's retained history instead of a file")
    rp.add_argument("--bootstrap", help="with --topic: this broker instead of the local one")
    rp.add_argument("--from", dest="since", help="with --topic: start at this time (RFC 3339, epoch ms, or an age like 7d)")
    rp.add_argument("--alerts", help="write alerts here (JSON lines)")
    rp.add_argument("--report", help="write an HTML report: the summary and each new alert's pictures")
    rp.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")
    rp.add_argument("--commands", help="write commands here (JSON lines)")
    rp.add_argument("--dead-letters", help="write rejected lines here (JSON lines)")
    rp.set_defaults(func=cmd_replay)

    b = sub.add_parser("broker", help="a local single-node Apache Kafka")
    b.add_argument("action", choices=["start", "stop", "status", "restart"])
    b.add_argument("--state-dir", help="where the broker's pid and address are kept")
    b.add_argument("--heap", default="512m")
    b.set_defaults(func=cmd_broker)

    e = sub.add_parser("explain", help="an alert's picture: current vs baseline, last 24 h, same slot")
    e.add_argument("alert_id")
    e.add_argument("--alerts", help="alerts file (JSON lines); default: read the alerts topic")
    e.add_argument("--bootstrap")
    e.add_argument("--config")
    e.add_argument("--topic", default="drift.alerts")
    e.add_argument("--timeout", type=float, default=10.0)
    e.add_argument("--out", help="write a self-contained HTML page")
    e.add_argument("--png", help="also write the page as a PNG picture (needs Chromium)")
    e.set_defaults(func=cmd_explain)

    d = sub.add_parser("demo", help="the whole loop on the local broker")
    d.add_argument("--bootstrap", help="use this broker instead of starting the local one")
    d.add_argument("--weeks", type=int, default=8)
    d.add_argument("--out-dir", default="driftline-demo")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("subscribe", help="what a model server sees on the control topic")
    s.add_argument("--model", required=True)
    s.add_argument("--bootstrap")
    s.add_argument("--config")
    s.add_argument("--topic")
    s.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
    s.add_argument("--at", help="judge the commands' expiry as of this time, not now (RFC 3339, epoch ms, or an "
                                "age like 2d): what a server saw then, from an old control topic")
    s.set_defaults(func=cmd_subscribe)

    for action, text in (("accept", "accept the drift a model alerts on as its new normal (rebase, restore)"),
                         ("silence", "silence a model's alerts for a while: published as silenced, no commands")):
        o = sub.add_parser(action, help=text)
        o.add_argument("--model", required=True)
        if action == "accept":
            o.add_argument("--segment", action="append", metavar="K=V[,K=V]",
                           help="only this segment (repeat for more; default: every segment)")
        else:
            o.add_argument("--for", dest="duration", required=True, metavar="DURATION",
                           help="how long, e.g. 2h, 30m, 1d (0 ends a silence)")
        o.add_argument("--note", help="why (shown on /alerts and in the restore's reason)")
        o.add_argument("--by", help="who (default: the login name)")
        o.add_argument("--config")
        o.add_argument("--bootstrap")
        o.set_defaults(func=cmd_operate, action=action)

    sc = sub.add_parser("schema", help="print (or write) the JSON Schemas")
    sc.add_argument("--write", metavar="DIR")
    sc.set_defaults(func=cmd_schema)

    sm = sub.add_parser("simulate", help="write synthetic seasonal prediction events (JSONL)")
    sm.add_argument("--out", help="write the events to this JSONL file")
    sm.add_argument("--topic", help="produce the events to this Kafka topic (created if missing)")
    sm.add_argument("--bootstrap", help="with --topic: this broker instead of the local one")
    sm.add_argument("--partitions", type=int, default=3, help="with --topic: partitions of a new topic")
    sm.add_argument("--model", default="fraud")
    sm.add_argument("--weeks", type=int, default=8)
    sm.add_argument("--rate", type=float, default=60.0)
    sm.add_argument("--seed", type=int, default=0)
    sm.add_argument("--drift-segment", type=int, default=2)
    sm.add_argument("--drift-hours", type=int, default=0, help="shift that segment's predictions this many last hours")
    sm.add_argument("--drift-shift", type=float, default=0.25)
    sm.set_defaults(func=cmd_simulate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"driftline: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
