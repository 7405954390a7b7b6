"""OpenTelemetry: with an OTLP endpoint set, each request on a cached route is one trace at
a real OTLP/HTTP receiver (started here, decoding the protobuf as a collector does), with
child spans for the lookup, the embedding, the verification and the upstream call."""

from __future__ import annotations

import gzip
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from test_semantic import REAL_SEMANTIC

STORED, ASKED = "Why is the sky blue?", "Why does the sky look blue?"


class Receiver(ThreadingHTTPServer):
    """POST /v1/traces: keeps every span it is sent, as (resource attributes, span)."""

    def __init__(self) -> None:
        self.spans: list = []
        self.paths: list[str] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def wait_for(self, count: int) -> list:
        """The spans received once there are `count` (the exporter sends in batches)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.spans) >= count:
                    return list(self.spans)
            time.sleep(0.1)
        pytest.fail(f"{len(self.spans)} spans arrived, not {count}")


class ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        with self.server.lock:
            self.server.paths.append(self.path)
            for resource_spans in export.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    self.server.spans.extend(scope_spans.spans)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


def attributes(span) -> dict:
    values = {}
    for attribute in span.attributes:
        value = attribute.value
        values[attribute.key] = getattr(value, value.WhichOneof("value"))
    return values


def tree(spans: list, trace_id: bytes) -> dict:
    """A trace as {name: span} plus each span's parent's name under 'parents'."""
    mine = [s for s in spans if s.trace_id == trace_id]
    by_id = {s.span_id: s for s in mine}
    return {
        "spans": mine,
        "parents": {
            s.name: by_id[s.parent_span_id].name if s.parent_span_id else None for s in mine
        },
    }


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_each_request_is_one_trace_with_its_lookup_embedding_verification_and_upstream(
    make_gateway, receiver
):
    gw = make_gateway(
        env={
            **REAL_SEMANTIC,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # ms: a test need not wait 5 s for a batch
            "OTEL_SERVICE_NAME": "cachegate-test",
        }
    )
    client = gw.client()
    namespace = {"X-Cache-Namespace": f"trace-{uuid.uuid4().hex[:8]}"}
    statuses = []
    for text in (STORED, STORED, ASKED):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": text}],
            extra_headers=namespace,
        )
        statuses.append((raw.headers["x-cache-status"], raw.headers.get("x-cache-tier")))
    assert statuses == [("MISS", None), ("HIT", "exact"), ("HIT", "semantic")]

    # miss: request, lookup, upstream, the embedding of the stored answer; exact hit:
    # request, lookup; semantic hit: request, lookup, embedding, verification.
    spans = receiver.wait_for(4 + 2 + 4)
    assert set(receiver.paths) == {"/v1/traces"}
    roots = [s for s in spans if not s.parent_span_id]
    assert [s.name for s in roots] == ["POST /v1/chat/completions"] * 3, "one trace a request"
    roots.sort(key=lambda s: s.start_time_unix_nano)
    miss, exact, semantic = (tree(spans, root.trace_id) for root in roots)

    assert miss["parents"] == {
        "POST /v1/chat/completions": None,
        "lookup": "POST /v1/chat/completions",
        "upstream": "POST /v1/chat/completions",
        "embedding": "upstream",  # the answer's vector, computed as it is stored
    }
    assert exact["parents"] == {
        "POST /v1/chat/completions": None,
        "lookup": "POST /v1/chat/completions",
    }
    assert semantic["parents"] == {
        "POST /v1/chat/completions": None,
        "lookup": "POST /v1/chat/completions",
        "embedding": "lookup",
        "verification": "lookup",
    }

    on_miss, on_exact, on_semantic = (attributes(root) for root in roots)
    assert on_miss["cache.status"] == "MISS" and "cache.tier" not in on_miss
    assert on_miss["cache.miss_reason"] == "no_entry"  # nothing stored in its namespace yet
    assert "cache.miss_reason" not in on_exact
    assert on_miss["gen_ai.request.model"] == "gpt-4o-mini"
    assert on_miss["gen_ai.operation.name"] == "chat"
    assert on_miss["gen_ai.usage.input_tokens"] > 0 and on_miss["gen_ai.usage.output_tokens"] > 0
    assert on_miss["http.response.status_code"] == 200
    assert (on_exact["cache.status"], on_exact["cache.tier"]) == ("HIT", "exact")
    assert on_exact["gen_ai.usage.output_tokens"] == on_miss["gen_ai.usage.output_tokens"]
    assert (on_semantic["cache.status"], on_semantic["cache.tier"]) == ("HIT", "semantic")
    assert 0 < on_semantic["cache.similarity"] <= 1
    upstream = next(s for s in miss["spans"] if s.name == "upstream")
    assert attributes(upstream)["http.response.status_code"] == 200


def test_no_endpoint_means_no_tracing_at_all():
    """Without an endpoint the request path is handed the do-nothing tracer: the route
    handler itself, one shared span object, and OpenTelemetry never imported."""
    import subprocess
    import sys

    from tools.processes import REPO

    probe = (
        "import sys\n"
        "from gateway.tracing import NO_TRACING, start_tracing\n"
        "tracing = start_tracing({'OTEL_SERVICE_NAME': 'x'})\n"
        "handler = lambda request: None\n"
        "assert tracing is NO_TRACING and tracing.traced(handler) is handler\n"
        "assert tracing.span('lookup') is tracing.span('upstream')\n"
        "import gateway.app\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    said = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert said.stdout.strip() == "[]"
