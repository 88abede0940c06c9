"""Metrics: the Prometheus endpoint of the worker (the Temporal SDK's runtime metrics and the
workflow's held touches) and of the web app (events, webhook latency, database gauges),
read over HTTP and parsed with the client library's own text-format parser."""

from __future__ import annotations

import secrets
from datetime import timedelta

import httpx
from conftest import SKELETON_PLAYBOOK, free_port, write_cadence_set
from harness import running
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from web_helpers import asgi_client, post_signed, wait_until

from nurture.adapters import metrics
from nurture.adapters.schema import migrate
from nurture.web import create_app


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of a Prometheus text page by sample name (the parser refuses bad text)."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


GAPPED_PLAYBOOK = SKELETON_PLAYBOOK.replace(
    'limits:\n      send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}',
    'limits:\n      min_gap_between_touches: 3d\n      send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}',
)


async def test_worker_exports_sdk_metrics_and_held_touches(
    time_env, make_settings, smtp_sink, tmp_path
):
    assert GAPPED_PLAYBOOK != SKELETON_PLAYBOOK
    cadences_dir, templates_dir = write_cadence_set(tmp_path / "gapped", playbook=GAPPED_PLAYBOOK)
    settings = make_settings(cadences_dir=cadences_dir, templates_dir=templates_dir)
    registry = CollectorRegistry()
    telemetry = metrics.make_telemetry(registry, {"process": "worker"})
    client = await Client.connect(
        time_env.client.service_client.config.target_host,
        namespace=time_env.client.namespace,
        data_converter=pydantic_data_converter,
        runtime=telemetry.runtime,
    )
    lead_id = f"L-{secrets.token_hex(4)}"
    async with running(client, settings) as stack:
        await stack.add_lead(id=lead_id, email="mia@example.com", country="US")
        await smtp_sink.wait_for(1)
        await stack.until(lead_id, lambda v: v.step == "pause")
        # The wait ends after 2 days; the gap of 3 days holds the follow-up back.
        await time_env.sleep(timedelta(days=2, minutes=5))
        await stack.until(lead_id, lambda v: any("deferred" in h.what for h in v.history))

        async def held() -> list[tuple[dict[str, str], float]]:
            page = generate_latest(registry).decode()
            return samples(page).get("nurture_touches_held_total", [])

        found = await wait_until(held)
        assert any(labels["reason"] == "min_gap" and value >= 1 for labels, value in found)
        page = samples(generate_latest(registry).decode())
        # The SDK's own metrics, through its runtime telemetry.
        assert any(name.startswith("temporal_") for name in page), sorted(page)[:20]
        assert any(name.endswith("_bucket") and name.startswith("temporal_") for name in page), (
            "SDK latency histograms are exported with buckets"
        )
        task_counts = page.get("temporal_workflow_task_queue_poll_succeed_total") or page.get(
            "temporal_request_total", []
        )
        assert task_counts and all(labels.get("process") == "worker" for labels, _ in task_counts)


async def test_web_app_metrics_endpoint(make_settings, time_env):
    port = free_port()
    settings = make_settings(metrics_port=port)
    await migrate(settings.database_url)
    app = create_app(settings, client=time_env.client)
    async with asgi_client(app) as client, httpx.AsyncClient() as scraper:
        secret = settings.require_webhook_secret()
        lead_id = f"L-{secrets.token_hex(4)}"
        event = {
            "id": f"evt-{secrets.token_hex(4)}",
            "type": "page.visited",
            "lead_id": lead_id,
            "occurred_at": "2026-11-22T10:00:00Z",
            "data": {"url": "/pricing"},
        }
        first = await post_signed(client, secret, "/events", event)
        assert first.status_code == 202, first.text
        again = await post_signed(client, secret, "/events", event)
        assert again.status_code == 200, again.text

        async def scraped() -> dict[str, list[tuple[dict[str, str], float]]] | None:
            response = await scraper.get(f"http://127.0.0.1:{port}/metrics")
            assert response.status_code == 200
            page = samples(response.text)
            # The database gauges are set by the refresher, soon after start.
            return page if "nurture_call_tasks" in page else None

        page = await wait_until(scraped)
        events = {labels["outcome"]: value for labels, value in page["nurture_events_total"]}
        assert events["received"] >= 2
        assert events["parked"] >= 1  # the lead does not exist yet
        assert events["duplicate"] >= 1
        latency = [
            (labels, value)
            for labels, value in page["nurture_webhook_duration_seconds_count"]
            if labels["path"] == "/events"
        ]
        assert {labels["status"] for labels, _ in latency} >= {"202", "200"}
        states = {labels["state"] for labels, _ in page["nurture_call_tasks"]}
        assert states == {"open", "overdue", "escalated"}
        stages = {labels["stage"] for labels, _ in page["nurture_leads"]}
        assert {"nurturing", "mql", "sql", "won", "lost", "recycling", "closed"} <= stages
        statuses = {labels["status"] for labels, _ in page["nurture_email_sends"]}
        assert {"sent", "failed", "unknown"} <= statuses
        crm = {labels["status"]: value for labels, value in page["nurture_crm_outbox"]}
        assert crm == {"pending": 0.0, "sent": 0.0, "failed": 0.0}
        assert page["nurture_crm_unmatched"] == [({}, 0.0)]
    # The endpoint goes away with the app.
    async with httpx.AsyncClient() as scraper:
        try:
            await scraper.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            stopped = False
        except httpx.HTTPError:
            stopped = True
    assert stopped
