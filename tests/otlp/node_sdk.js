// Ships three log records through the OpenTelemetry JavaScript SDK (`@opentelemetry/sdk-logs`)
// and its OTLP/HTTP JSON exporter, gzip-compressed. Usage: node node_sdk.js BASE_URL RUN_ID
const { LoggerProvider, SimpleLogRecordProcessor } = require('@opentelemetry/sdk-logs');
const { OTLPLogExporter } = require('@opentelemetry/exporter-logs-otlp-http');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { SeverityNumber } = require('@opentelemetry/api-logs');

const [base, run] = process.argv.slice(2);
const exporter = new OTLPLogExporter({ url: `${base}/otlp/v1/logs`, compression: 'gzip' });
const provider = new LoggerProvider({
  resource: resourceFromAttributes({
    'service.name': 'node-otel',
    'k8s.namespace.name': 'shop',
    'process.pid': 4242,
    run,
  }),
  processors: [new SimpleLogRecordProcessor({ exporter })],
});
const logger = provider.getLogger('sawmill.node', '1.2.3');
const t0 = Date.now();
logger.emit({
  timestamp: t0,
  severityNumber: SeverityNumber.INFO,
  severityText: 'INFO',
  body: `node otlp line 1 run=${run}`,
  attributes: { 'http.method': 'GET', 'http.status_code': 200 },
});
logger.emit({
  timestamp: t0 + 1,
  severityNumber: SeverityNumber.ERROR2,
  body: { msg: 'payment failed', amount: 12.5, tags: ['a', 'b'] },
  attributes: { retry: true },
});
logger.emit({
  timestamp: t0 + 2,
  body: 'node otlp line 3 without severity',
});
provider.shutdown().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
