"""OpenTelemetry traces of the cached routes, sent over OTLP/HTTP when an endpoint is set.

`start_tracing(environ)` runs once at start and returns what the request path is handed:
with neither OTEL_EXPORTER_OTLP_ENDPOINT nor OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set,
NO_TRACING, whose methods return their input or one shared do-nothing span, so nothing of
OpenTelemetry is imported and a request pays two no-op calls at most. With one set, a span
per request on the cached routes (its name the method and path; attributes `cache.status`,
`cache.tier`, `cache.similarity`, `cache.miss_reason`, and the GenAI semantic conventions'
`gen_ai.*`), with
child spans `lookup`, `embedding`, `verification` and `upstream`, batched by a
BatchSpanProcessor to the endpoint (the exporter reads the OTEL_EXPORTER_OTLP_* variables
itself: headers, timeout, compression; OTEL_SERVICE_NAME names the service).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any

from aiohttp import web

from gateway.ledger import Record

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# The GenAI conventions' operation names, by the gateway's endpoint names.
OPERATIONS = {
    "chat": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "messages": "chat",
    "responses": "chat",
}


class NullSpan(AbstractContextManager):
    """A span that records nothing: the one object every span of NO_TRACING is."""

    def __enter__(self) -> NullSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_attribute(self, name: str, value: Any) -> None:
        return None


NULL_SPAN = NullSpan()


class Tracing:
    """Tracing off: every method is free (the same span object, the handler unchanged)."""

    def traced(self, handler: Handler) -> Handler:
        """The route handler, in a request span when tracing is on."""
        return handler

    def span(self, name: str) -> AbstractContextManager:
        """A child span of the current request, as a context manager yielding the span."""
        return NULL_SPAN

    def annotate(self, record: Record) -> None:
        """Put what the ledger learnt of the request on its span."""

    def shutdown(self) -> None:
        """Send the spans still batched."""


NO_TRACING = Tracing()


class OtlpTracing(Tracing):
    """Spans to an OTLP/HTTP endpoint through the OpenTelemetry SDK (imported only here)."""

    def __init__(self) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import SpanKind

        # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, win over this name.
        self.provider = TracerProvider(resource=Resource.create({"service.name": "cachegate"}))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self.tracer = self.provider.get_tracer("cachegate")
        self.server_kind = SpanKind.SERVER
        # The request span of the running request: the ledger record lands on it even when
        # it is written inside a child span (a stream's answer is stored within `upstream`).
        self.request_span: ContextVar[Any] = ContextVar("cachegate_request_span", default=None)

    def traced(self, handler: Handler) -> Handler:
        async def traced_handler(request: web.Request) -> web.StreamResponse:
            name = f"{request.method} {request.path}"
            with self.tracer.start_as_current_span(name, kind=self.server_kind) as span:
                span.set_attribute("http.request.method", request.method)
                span.set_attribute("url.path", request.path)
                token = self.request_span.set(span)
                try:
                    response = await handler(request)
                finally:
                    self.request_span.reset(token)
                span.set_attribute("http.response.status_code", response.status)
                return response

        return traced_handler

    @contextmanager
    def span(self, name: str) -> Iterator[Any]:
        with self.tracer.start_as_current_span(name) as span:
            yield span

    def annotate(self, record: Record) -> None:
        span = self.request_span.get()
        if span is None:
            return
        attributes: dict[str, Any] = {
            "cache.status": record.status,
            "gen_ai.request.model": record.model,
            "gen_ai.usage.input_tokens": record.prompt_tokens,
            "gen_ai.usage.output_tokens": record.completion_tokens,
            "cachegate.namespace": record.namespace,
        }
        if operation := OPERATIONS.get(record.endpoint):
            attributes["gen_ai.operation.name"] = operation
        if record.tier is not None:
            attributes["cache.tier"] = record.tier
        if record.similarity is not None:
            attributes["cache.similarity"] = record.similarity
        if record.key is not None:
            attributes["cache.key"] = record.key
        if record.reason is not None:  # why a miss missed, as the ledger records it
            attributes["cache.miss_reason"] = record.reason
            if record.detail is not None:
                attributes["cache.miss_detail"] = record.detail
            if record.score is not None:
                attributes["cache.candidate_score"] = record.score
        span.set_attributes(attributes)

    def shutdown(self) -> None:
        self.provider.shutdown()


def start_tracing(environ: Mapping[str, str]) -> Tracing:
    """OtlpTracing when an OTLP endpoint is configured, else NO_TRACING."""
    if any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES):
        return OtlpTracing()
    return NO_TRACING
