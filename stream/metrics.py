"""Prometheus metrics, defined once against an injected registry (nothing at import time).

Labels are bounded: model names come from the config (unknown ones are counted as ``(unknown)``),
reasons and severities are fixed sets; segments never become labels.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.consumed = Counter("driftline_events_consumed", "Records consumed from the input topic", registry=r)
        self.processed = Counter(
            "driftline_events_processed", "Valid events added to windows", ["model"], registry=r
        )
        self.dead_lettered = Counter(
            "driftline_events_dead_lettered", "Records sent to the dead-letter topic", ["reason"], registry=r
        )
        self.engine_errors = Counter(
            "driftline_engine_errors", "Records that made the engine raise: found by bisecting their batch, "
            "dead-lettered with reason engine_error (a bug to report: the record, the detail)", registry=r,
        )
        self.batches_failed = Counter(
            "driftline_batches_failed", "Consumed batches that made the engine raise (rewound, then isolated)",
            registry=r,
        )
        self.late = Counter("driftline_events_late", "Events later than the watermark", ["model"], registry=r)
        self.invalid = Counter(
            "driftline_events_invalid", "Events refused for their prediction (null, NaN, wrong type, out of range) "
            "whose model could be read", ["model"], registry=r)
        self.silent = Counter(
            "driftline_series_silent", "Series found silent while their calendar slot expected events", ["model"],
            registry=r)
        self.lane_crossings = Counter(
            "driftline_lane_crossings", "Series whose fast-lane test crossed its threshold in an open window",
            ["model"], registry=r)
        self.windows_closed = Counter(
            "driftline_windows_closed", "Event-time windows closed", ["model"], registry=r
        )
        self.alerts = Counter(
            "driftline_alerts", "Alert notifications published", ["model", "severity", "status"], registry=r
        )
        self.commands = Counter("driftline_commands", "Commands published", ["model", "action"], registry=r)
        self.breakers_open = Gauge("driftline_breakers_open", "Models whose circuit breaker is open", registry=r)
        self.breakers_rate_limited = Counter(
            "driftline_breakers_rate_limited", "Circuit breaks withheld by the open-breaker cap", registry=r
        )
        self.transactions_failed = Counter(
            "driftline_transactions_failed", "Transactions aborted or lost to a fatal producer error, then rewound", registry=r
        )
        self.restore_seconds = Gauge(
            "driftline_state_restore_seconds", "Time the last partition assignment took to restore state", registry=r
        )
        self.late_reports = Gauge(
            "driftline_late_reports", "Window reports the model stage got after deciding their window without them "
            "(a partition that had idled)", registry=r
        )
        self.windows_pending = Gauge(
            "driftline_model_windows_pending", "Model windows reported by some input partitions and waiting for the "
            "others to pass them before they are decided", registry=r
        )
        self.windows_uncommitted = Gauge(
            "driftline_model_windows_uncommitted", "Model windows decided since the last commit: their alerts "
            "and commands are in the transaction under way", registry=r
        )
        self.restore_bytes = Gauge(
            "driftline_state_restore_bytes", "State bytes the last partition assignment read from the state topic", registry=r
        )
        self.series = Gauge("driftline_series", "Series (model x segment) tracked", ["model"], registry=r)
        self.watermark = Gauge(
            "driftline_watermark_seconds", "Event-time watermark (epoch seconds)", registry=r
        )
        self.batch_seconds = Histogram(
            "driftline_batch_processing_seconds",
            "Time to process one consumed batch",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.shadow_skipped = Counter(
            "driftline_shadow_events_skipped", "Challenger events before the model's bins were learned", ["model"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "driftline_consumer_lag", "Records of the input topic not consumed yet, by partition", ["partition"],
            registry=r,
        )
        self.operations = Counter(
            "driftline_operations", "Operators' commands read (accept, silence), and those refused (unsigned, "
            "forged, or not newer than the last applied) or unusable", ["action"], registry=r,
        )
        self.alertmanager_posts = Counter(
            "driftline_alertmanager_posts", "Posts of alerts to Alertmanager, by result", ["result"], registry=r
        )
        self.batches_decoded = Counter(
            "driftline_batches_decoded", "Consumed batches by decoder: native (the compiled one, straight into "
            "columns) or python (a record it does not read, or it is off or not built)", ["decoder"], registry=r,
        )
        self.batch_events = Histogram(
            "driftline_batch_events", "Records per consumed batch",
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 50000), registry=r,
        )
