"""Prometheus metrics: the product's own and the Temporal SDK's, on one endpoint.

``NURTURE_METRICS_PORT`` set: the worker and the web app each serve ``GET /metrics``
(Prometheus text format) on that port. The Temporal SDK's metrics (workflow and activity
task latencies, poll results, schedule-to-start, sticky cache, the workflows' own
``nurture_touches_held``) come from its runtime telemetry: a :class:`MetricBuffer` that
:class:`TemporalCollector` drains into the same registry, so one scrape sees both.

The product's counters live in this module, registered once per process in
:data:`REGISTRY`; gauges read from the app database are set by the web app's refresher
(:mod:`nurture.services.metrics`).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    BUFFERED_METRIC_KIND_HISTOGRAM,
    BufferedMetricUpdate,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)

# The client library's default registry: it also carries the process and GC metrics.
__all__ = ["REGISTRY", "TemporalCollector", "Telemetry", "serve", "temporal_telemetry"]

EMAILS = Counter(
    "nurture_emails",
    "Emails that reached an outcome in this process, by status (unknown needs a person)",
    ["status"],
)
EVENTS = Counter(
    "nurture_events",
    "Events taken by the webhooks: received, then duplicate, parked, delivered or recorded",
    ["outcome"],
)
WEBHOOK_SECONDS = Histogram(
    "nurture_webhook_duration_seconds",
    "Time to answer a webhook, by path and HTTP status",
    ["path", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CRM_POSTS = Counter(
    "nurture_crm_posts",
    "Attempts to post to the CRM (the worker's outbox sender), by result: sent, retry, failed",
    ["result"],
)
CRM_OUTBOX = Gauge(
    "nurture_crm_outbox",
    "The CRM outbox by status (app database): pending, sent, failed (failed needs ops)",
    ["status"],
)
CRM_UNMATCHED = Gauge(
    "nurture_crm_unmatched",
    "CRM deal outcomes whose lead is not known yet (app database)",
)
CALL_TASKS = Gauge(
    "nurture_call_tasks",
    "Call tasks by state: open, overdue (past due, no outcome), escalated (flagged overdue)",
    ["state"],
)
LEADS = Gauge("nurture_leads", "Leads by stage (app database)", ["stage"])
SENDS = Gauge(
    "nurture_email_sends",
    "Outbox rows by status (app database); alert on a growing `unknown`",
    ["status"],
)


# --- the Temporal SDK's metrics through a MetricBuffer ----------------------------------------

# Durations are in seconds (the Prometheus convention); buckets suit task latencies.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_NAME = re.compile(r"[^a-zA-Z0-9_]")


def _name(text: str) -> str:
    cleaned = _NAME.sub("_", text)
    return cleaned if not cleaned[:1].isdigit() else f"_{cleaned}"


@dataclass
class _Series:
    kind: int
    description: str
    unit: str
    values: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    buckets: dict[tuple[tuple[str, str], ...], list[float]] = field(default_factory=dict)
    sums: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    counts: dict[tuple[tuple[str, str], ...], int] = field(default_factory=dict)


class TemporalCollector(Collector):
    """Drains the SDK runtime's :class:`MetricBuffer` and exposes what it holds.

    Counters arrive as increments and are summed; gauges keep their last value; histogram
    values are counted into :data:`DURATION_BUCKETS`. It drains on every scrape and from
    :meth:`drain` (call it every second or so: the buffer drops updates when full).
    """

    def __init__(self, buffer: MetricBuffer, labels: Mapping[str, str] | None = None) -> None:
        self.buffer = buffer
        # Added to every series (the buffer does not carry the runtime's global tags).
        self._labels = tuple((_name(k), str(v)) for k, v in (labels or {}).items())
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}

    def drain(self) -> None:
        with self._lock:
            for update in self.buffer.retrieve_updates():
                self._apply(update)

    def _apply(self, update: BufferedMetricUpdate) -> None:
        metric = update.metric
        name = _name(metric.name)
        series = self._series.get(name)
        if series is None:
            series = _Series(metric.kind, metric.description or metric.name, metric.unit or "")
            self._series[name] = series
        labels = tuple(
            sorted(
                {
                    **dict(self._labels),
                    **{_name(k): str(v) for k, v in update.attributes.items()},
                }.items()
            )
        )
        value = float(update.value)
        if series.kind == BUFFERED_METRIC_KIND_COUNTER:
            series.values[labels] = series.values.get(labels, 0.0) + value
        elif series.kind == BUFFERED_METRIC_KIND_GAUGE:
            series.values[labels] = value
        elif series.kind == BUFFERED_METRIC_KIND_HISTOGRAM:
            counts = series.buckets.setdefault(labels, [0.0] * len(DURATION_BUCKETS))
            for i, bound in enumerate(DURATION_BUCKETS):
                if value <= bound:
                    counts[i] += 1
            series.sums[labels] = series.sums.get(labels, 0.0) + value
            series.counts[labels] = series.counts.get(labels, 0) + 1

    def collect(self) -> Iterable[Metric]:
        self.drain()
        with self._lock:
            return list(self._families())

    def _families(self) -> Iterator[Metric]:
        for name, series in sorted(self._series.items()):
            if series.kind == BUFFERED_METRIC_KIND_COUNTER:
                family: Metric = CounterMetricFamily(name, series.description)
                for labels, value in series.values.items():
                    family.add_sample(name + "_total", dict(labels), value)
            elif series.kind == BUFFERED_METRIC_KIND_GAUGE:
                family = GaugeMetricFamily(name, series.description)
                for labels, value in series.values.items():
                    family.add_sample(name, dict(labels), value)
            else:
                # Durations arrive in seconds (MetricBufferDurationFormat.SECONDS).
                seconds = series.unit in ("duration", "s") and not name.endswith("_seconds")
                hname = f"{name}_seconds" if seconds else name
                family = HistogramMetricFamily(hname, series.description)
                for labels, counts in series.buckets.items():
                    base = dict(labels)
                    for bound, count in zip(DURATION_BUCKETS, counts, strict=True):
                        family.add_sample(hname + "_bucket", {**base, "le": _le(bound)}, count)
                    total = series.counts[labels]
                    family.add_sample(hname + "_bucket", {**base, "le": "+Inf"}, total)
                    family.add_sample(hname + "_count", base, total)
                    family.add_sample(hname + "_sum", base, series.sums[labels])
            yield family


def _le(bound: float) -> str:
    return str(float(bound)) if not math.isinf(bound) else "+Inf"


@dataclass
class Telemetry:
    """What a process needs for metrics: the SDK runtime to connect its client with, and
    the collector draining that runtime's buffer (None when metrics are off)."""

    runtime: Runtime | None = None
    collector: TemporalCollector | None = None

    def drain(self) -> None:
        if self.collector is not None:
            self.collector.drain()


_PROCESS_TELEMETRY: Telemetry | None = None


def temporal_telemetry(global_tags: Mapping[str, str] | None = None) -> Telemetry:
    """The process's SDK runtime whose metrics land in :data:`REGISTRY` (made on first use:
    one runtime and one collector per process, however many clients connect)."""
    global _PROCESS_TELEMETRY
    if _PROCESS_TELEMETRY is None:
        _PROCESS_TELEMETRY = make_telemetry(REGISTRY, global_tags)
    return _PROCESS_TELEMETRY


def make_telemetry(
    registry: CollectorRegistry, global_tags: Mapping[str, str] | None = None
) -> Telemetry:
    """An SDK runtime whose metrics land in ``registry`` (through a buffer)."""
    buffer = MetricBuffer(100_000, duration_format=MetricBufferDurationFormat.SECONDS)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    collector = TemporalCollector(buffer, global_tags)
    registry.register(collector)
    return Telemetry(runtime=runtime, collector=collector)


def serve(port: int, registry: CollectorRegistry = REGISTRY, addr: str = "0.0.0.0") -> Any:
    """Serve ``GET /metrics`` (Prometheus text) on ``port`` from a thread; returns the
    server (``.shutdown()`` stops it)."""
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server
