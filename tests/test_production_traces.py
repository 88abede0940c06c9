"""Traces: one trace from the web request through the signal-with-start, the workflow and its
activity to the SMTP conversation, captured with the OpenTelemetry SDK's in-memory exporter."""

from __future__ import annotations

import secrets

from harness import running
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from web_helpers import asgi_client, post_signed, wait_until

from nurture.adapters import tracing
from nurture.web import create_app


def test_off_unless_the_otel_variables_name_an_exporter():
    assert not tracing.configured({})
    assert tracing.configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not tracing.configured(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    )
    assert not tracing.configured(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}
    )
    assert tracing.client_interceptors() == []


async def test_one_trace_from_webhook_to_smtp(time_env, make_settings, smtp_sink):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        client = await Client.connect(
            time_env.client.service_client.config.target_host,
            namespace=time_env.client.namespace,
            data_converter=pydantic_data_converter,
            interceptors=tracing.client_interceptors(),
        )
        settings = make_settings()
        lead_id = f"L-{secrets.token_hex(4)}"
        async with (
            running(client, settings) as stack,
            asgi_client(create_app(settings, client=client)) as web,
        ):
            stack.started.add(lead_id)
            response = await post_signed(
                web,
                settings.require_webhook_secret(),
                "/leads",
                {"id": lead_id, "email": "mia@example.com", "country": "US"},
            )
            assert response.status_code == 202, response.text
            await smtp_sink.wait_for(1)

            def smtp_span():
                return next(
                    (s for s in exporter.get_finished_spans() if s.name == "smtp send"), None
                )

            async def found():
                return smtp_span()

            smtp = await wait_until(found)
        spans = exporter.get_finished_spans()
        by_id = {span.context.span_id: span for span in spans}
        chain = []
        span = smtp
        while span is not None:
            chain.append(span.name)
            span = by_id.get(span.parent.span_id) if span.parent else None
        # SMTP under the activity, under the workflow, under the signal-with-start, under
        # the web request: one trace.
        assert chain[0] == "smtp send"
        assert any(name.startswith("RunActivity:") for name in chain), chain
        # The workflow's own span: it scheduled the activity (spans made inside the workflow).
        assert any(name.startswith("StartActivity:") for name in chain), chain
        assert any(
            name.startswith(("SignalWithStartWorkflow:", "StartWorkflow:")) for name in chain
        ), chain
        assert chain[-1].startswith("POST /leads"), chain
        assert (
            len({by_id[s.context.span_id].context.trace_id for s in spans if s.name in chain}) >= 1
        )
        assert (
            smtp.context.trace_id
            == by_id[next(s.context.span_id for s in spans if s.name == chain[-1])].context.trace_id
        )
        # No personal data in any span.
        for span in spans:
            assert "mia@example.com" not in str(dict(span.attributes or {}))
    finally:
        tracing.use(None)
