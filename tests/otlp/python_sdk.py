"""Ships three log records through the OpenTelemetry Python SDK's logging handler and its
OTLP/HTTP protobuf exporter. Usage: python_sdk.py BASE_URL RUN_ID. Prints the trace and span
IDs of the span the second record is logged in, as JSON."""
import json
import logging
import sys

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

base, run = sys.argv[1], sys.argv[2]
resource = Resource.create({
    "service.name": "py-otel",
    "deployment.environment": "ci",
    "host.name": "runner-1",
    "run": run,
})
provider = LoggerProvider(resource=resource)
provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=base + "/otlp/v1/logs")))
handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
log = logging.getLogger("sawmill.otlp")
log.propagate = False
log.setLevel(logging.DEBUG)
log.addHandler(handler)

tracer = TracerProvider(resource=resource).get_tracer("sawmill.test")
log.info("python otlp line 1 run=%s", run)
with tracer.start_as_current_span("checkout") as span:
    ctx = span.get_span_context()
    log.warning("python otlp line 2", extra={"order.id": 42, "customer": "ada"})
log.error("python otlp line 3")
provider.shutdown()
print(json.dumps({"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}))
