"""OpenTelemetry tracing, off unless an OTLP endpoint is configured (or a test passes an exporter).

The API opens a span per request; the submit stores the W3C ``traceparent`` of that span with
the task, and the worker's run span continues that trace (parent) and links to it, so one
trace shows a task from its submit to its last attempt.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from taskcore.settings import Settings

_PROPAGATOR = TraceContextTextMapPropagator()
TRACES_PATH = "/v1/traces"


class Tracing:
    """A tracer of the process's own (no global provider is installed, so tests stay isolated)."""

    def __init__(self, provider: TracerProvider | None, name: str) -> None:
        self._provider = provider
        self.enabled = provider is not None
        self.tracer: trace.Tracer = provider.get_tracer(name) if provider is not None else trace.NoOpTracer()

    @classmethod
    def from_settings(cls, settings: Settings, *, service: str, exporter: SpanExporter | None = None) -> Tracing:
        """Tracing for ``service``: to ``exporter`` if given (tests), else to the configured OTLP
        endpoint, else off (every span a no-op)."""
        if exporter is None and not settings.otel_exporter_otlp_endpoint:
            return cls(None, service)
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = str(settings.otel_exporter_otlp_endpoint).rstrip("/")
            if not endpoint.endswith(TRACES_PATH):
                endpoint += TRACES_PATH
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        return cls(provider, service)

    def current_traceparent(self) -> str | None:
        """The W3C traceparent of the active span, to store with a task; None when tracing is off."""
        if not self.enabled:
            return None
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return carrier.get("traceparent")

    @contextmanager
    def server_span(self, name: str, attributes: dict[str, Any]) -> Iterator[Span]:
        """A request span, made current for the block (the submit reads it)."""
        with self.tracer.start_as_current_span(name, kind=SpanKind.SERVER, attributes=attributes) as span:
            yield span

    @contextmanager
    def run_span(self, name: str, traceparent: str | None, attributes: dict[str, Any]) -> Iterator[Span]:
        """A task run span: a child of the submit span carried in ``traceparent``, and linked to it."""
        parent = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else otel_context.Context()
        parent_span = trace.get_current_span(parent).get_span_context()
        links = [Link(parent_span)] if parent_span.is_valid else []
        with self.tracer.start_as_current_span(
            name, context=parent, kind=SpanKind.CONSUMER, links=links, attributes=attributes
        ) as span:
            yield span

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
