"""OpenTelemetry for gptunnel-async (the ``otel`` extra: ``pip install gptunnel-async[otel]``).

::

    from gptunnel_async.otel import OpenTelemetry

    client = AsyncGPTunnel(telemetry=OpenTelemetry())  # the global tracer and meter providers

Spans: ``gptunnel create``, ``gptunnel poll``, ``gptunnel read`` and ``gptunnel download``, one
per operation, each try an ``attempt`` event. Metrics: ``gptunnel.requests`` (tries, by
operation and outcome), ``gptunnel.tasks.in_flight``, ``gptunnel.rate_limited`` (429 pauses) and
``gptunnel.task.detection_window`` (seconds from the last "running" poll to the "done" one: an
upper bound on the detection delay). Only methods, paths, task ids, statuses, timings and the
SDK's own redacted error texts are recorded: never headers, bodies, query strings or the key.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode

from ._logs import redact
from ._telemetry import Operation
from ._version import __version__

_SCOPE = "gptunnel_async"


class _Span:
    """An ``Operation`` recorded on one span."""

    def __init__(self, span: trace.Span, name: str, requests: metrics.Counter) -> None:
        self._span = span
        self._name = name
        self._requests = requests

    def attempt(self, number: int, outcome: str, *, status: int | None, elapsed: float) -> None:
        attributes: dict[str, Any] = {
            "gptunnel.attempt": number,
            "gptunnel.outcome": outcome,
            "gptunnel.elapsed_ms": round(elapsed * 1000, 3),
        }
        if status is not None:
            attributes["http.response.status_code"] = status
            self._span.set_attribute("http.response.status_code", status)
        self._span.add_event("attempt", attributes)
        self._span.set_attribute("gptunnel.attempts", number)
        self._requests.add(1, {"gptunnel.operation": self._name, "gptunnel.outcome": outcome})

    def failed(self, error: BaseException) -> None:
        text = redact(f"{type(error).__name__}: {error}")
        self._span.set_status(Status(StatusCode.ERROR, text))
        self._span.add_event("exception", {"exception.type": type(error).__name__})
        self._span.set_attribute("error.type", type(error).__name__)


class OpenTelemetry:
    """A ``Telemetry`` that records spans and metrics through OpenTelemetry's API.

    Without arguments it uses the global providers (set up by your application or by
    ``opentelemetry-instrument``); pass ``tracer_provider`` / ``meter_provider`` to choose.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self._requests = meter.create_counter(
            "gptunnel.requests", unit="{request}", description="API requests sent, per try"
        )
        self._in_flight = meter.create_up_down_counter(
            "gptunnel.tasks.in_flight", unit="{task}", description="tasks pollers are following"
        )
        self._rate_limited = meter.create_counter(
            "gptunnel.rate_limited", unit="{pause}", description="429 answers (pauses)"
        )
        self._detection = meter.create_histogram(
            "gptunnel.task.detection_window",
            unit="s",
            description="from the last poll that saw a task running to the one that saw it done",
        )

    @contextmanager
    def operation(
        self, name: str, *, method: str, path: str, task_id: str | None
    ) -> Iterator[Operation]:
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": path,
            "gptunnel.operation": name,
        }
        if task_id is not None:
            attributes["gptunnel.task_id"] = task_id
        kind = trace.SpanKind.CLIENT
        with self._tracer.start_as_current_span(
            f"gptunnel {name}",
            kind=kind,
            attributes=attributes,
            record_exception=False,  # exceptions are recorded redacted, by ``failed``
            set_status_on_exception=False,
        ) as span:
            yield _Span(span, name, self._requests)

    def tasks_in_flight(self, delta: int) -> None:
        self._in_flight.add(delta)

    def rate_limited(self, retry_after: float | None) -> None:
        attributes = {} if retry_after is None else {"gptunnel.retry_after": retry_after}
        self._rate_limited.add(1, attributes)

    def task_detected(self, model: str | None, window: float) -> None:
        self._detection.record(max(window, 0.0), {"gptunnel.model": model or "unknown"})
