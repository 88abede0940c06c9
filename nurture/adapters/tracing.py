"""OpenTelemetry traces: web request -> signal or start -> workflow -> activity -> SMTP.

Off unless the standard ``OTEL_*`` variables name an exporter endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); then spans go
out over OTLP/HTTP, with ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_EXPORTER_OTLP_HEADERS`` and the rest read by the SDK itself.
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` keep it off.

The pieces: FastAPI's instrumentation (a span per request), Temporal's
:class:`TracingInterceptor` on the client (the signal or start carries the context in its
headers, the workflow and each activity continue it), and :func:`span` around the SMTP
conversation. Spans carry ids and step names, never a lead's personal data.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace

TRACER_NAME = "nurture"

# The provider spans go to: set by setup() (which also makes it the global one), or by a
# test with use(); None: traces are off.
_provider: Any = None


def use(provider: Any) -> None:
    """Send spans to ``provider`` (an SDK ``TracerProvider``); None turns traces off."""
    global _provider
    _provider = provider


def configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces to be exported."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


def setup(service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Install an exporting tracer provider when :func:`configured`; True when it did.

    Args:
        service_name: used when ``OTEL_SERVICE_NAME`` is unset (``nurture-worker``,
            ``nurture-web``).
    """
    if not configured(env) or enabled():
        return enabled()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    env = os.environ if env is None else env
    resource = Resource.create(
        {"service.name": env.get("OTEL_SERVICE_NAME") or service_name}
    ).merge(OTELResourceDetector().detect())
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    use(provider)
    return True


def enabled() -> bool:
    """Whether traces are on (by :func:`setup`, or a test's :func:`use`)."""
    return _provider is not None


def client_interceptors() -> list[Any]:
    """Temporal's tracing interceptor when traces are on (workers inherit it from the
    client), else none: no headers, no work."""
    if not enabled():
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(tracer=_provider.get_tracer("temporalio"))]


def instrument_app(app: Any) -> None:
    """A span per web request (FastAPI's instrumentation) when traces are on."""
    if not enabled():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=_provider, excluded_urls="health,metrics"
    )


@contextlib.contextmanager
def span(name: str, **attributes: str | int | bool) -> Iterator[None]:
    """A span named ``name`` under the current one (a no-op while traces are off)."""
    if _provider is None:
        yield
        return
    with _provider.get_tracer(TRACER_NAME).start_as_current_span(name, attributes=attributes):
        yield
