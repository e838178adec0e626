"""OpenTelemetry: a span per create, poll and download, the SDK's metrics, and never the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gptunnel_async import AsyncGPTunnel, Poller, PollerOptions, RateLimitError
from gptunnel_async.otel import OpenTelemetry
from gptunnel_async.testing import Emulator, EmulatorConfig, serve

pytestmark = pytest.mark.anyio

KEY = "otel-canary-key-0123456789"


class _Recorded:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[self.metrics])
        self.telemetry = OpenTelemetry(
            tracer_provider=tracer_provider, meter_provider=meter_provider
        )

    def metric_points(self) -> dict[str, list[Any]]:
        data = self.metrics.get_metrics_data()
        points: dict[str, list[Any]] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points.setdefault(metric.name, []).extend(metric.data.data_points)
        return points

    def everything_as_text(self) -> str:
        exported = [json.loads(span.to_json()) for span in self.spans.get_finished_spans()]
        return json.dumps(exported) + self.metrics.get_metrics_data().to_json()  # type: ignore[union-attr]


async def test_create_wait_and_download_are_spans_with_attempts(tmp_path: Path) -> None:
    recorded = _Recorded()
    emulator = Emulator(EmulatorConfig(time_scale=200, api_keys={KEY}))
    # one attempt the server certainly refused, so it is retried
    emulator.faults.script("POST /v1/media/create", [(429, {"Retry-After": "0"})])
    async with (
        serve(emulator) as server,
        AsyncGPTunnel(KEY, base_url=server.url, telemetry=recorded.telemetry) as client,
    ):
        task = await client.media.create(model="google-imagen-3", prompt="a lighthouse")
        done = await client.media.wait(task, timeout=60)
        await client.download(done, tmp_path / "out/")

    spans = recorded.spans.get_finished_spans()
    names = [span.name for span in spans]
    assert names[0] == "gptunnel create"
    assert "gptunnel poll" in names
    assert names[-1] == "gptunnel download"
    create = spans[0]
    attempts = [event for event in create.events if event.name == "attempt"]
    assert [event.attributes["gptunnel.outcome"] for event in attempts] == ["retry", "ok"]  # type: ignore[index]
    assert attempts[0].attributes["http.response.status_code"] == 429  # type: ignore[index]
    assert create.attributes["url.path"] == "/v1/media/create"  # type: ignore[index]
    poll = next(span for span in spans if span.name == "gptunnel poll")
    assert poll.attributes["gptunnel.task_id"] == task.id  # type: ignore[index]

    points = recorded.metric_points()
    outcomes = {
        (p.attributes["gptunnel.operation"], p.attributes["gptunnel.outcome"]): p.value
        for p in points["gptunnel.requests"]
    }
    assert outcomes[("create", "retry")] == 1
    assert outcomes[("create", "ok")] == 1
    assert outcomes[("poll", "ok")] >= 1
    assert KEY not in recorded.everything_as_text()


async def test_a_failed_operation_is_an_error_span_without_the_key() -> None:
    recorded = _Recorded()
    emulator = Emulator(EmulatorConfig(time_scale=200, api_keys={KEY}))
    emulator.faults.script("GET /v1/balance", [(429, {"Retry-After": "0"})] * 3)
    async with (
        serve(emulator) as server,
        AsyncGPTunnel(
            KEY, base_url=server.url, max_retries=1, telemetry=recorded.telemetry
        ) as client,
    ):
        with pytest.raises(RateLimitError):
            await client.balance()

    (span,) = recorded.spans.get_finished_spans()
    assert span.name == "gptunnel read"
    assert not span.status.is_ok
    assert [e.attributes["gptunnel.outcome"] for e in span.events if e.name == "attempt"] == [  # type: ignore[index]
        "retry",
        "retry",
    ]
    assert sum(p.value for p in recorded.metric_points()["gptunnel.rate_limited"]) == 2
    assert KEY not in recorded.everything_as_text()


async def test_a_poller_reports_tasks_in_flight_and_detection_windows() -> None:
    recorded = _Recorded()
    emulator = Emulator(EmulatorConfig(time_scale=200, api_keys={KEY}))
    async with (
        serve(emulator) as server,
        AsyncGPTunnel(KEY, base_url=server.url, telemetry=recorded.telemetry) as client,
    ):
        tasks = [
            await client.media.create(model="google-imagen-3", prompt=f"lighthouse {n}")
            for n in range(3)
        ]
        async with Poller(client, PollerOptions(max_concurrency=4)) as poller:
            for task in tasks:
                poller.add(task)
            results = [result async for result in poller]
    assert all(result.ok for result in results)
    points = recorded.metric_points()
    assert sum(p.value for p in points["gptunnel.tasks.in_flight"]) == 0  # up by 3, down by 3
    (histogram,) = points["gptunnel.task.detection_window"]
    assert histogram.count == 3
    assert histogram.min >= 0
