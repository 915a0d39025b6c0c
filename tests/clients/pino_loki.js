// Pushes three lines to Sawmill through pino-loki in the main process (JSON push), one with
// structured metadata (pino-loki's `meta` key).
// Usage: node pino_loki.js URL RUN_ID
const pino = require('pino')
const { pinoLoki } = require('pino-loki')

const [url, run] = process.argv.slice(2)
const transport = pinoLoki({
  host: url,
  labels: { client: 'pino-loki', run },
  batching: false,
  silenceErrors: false,
  logFormat: '{msg}'
})
const logger = pino({ level: 'debug' }, transport)

logger.info(`pino line 1 run=${run}`)
logger.warn(`pino line 2 run=${run}`)
logger.error({ meta: { trace_id: 'abc' } }, `pino line 3 run=${run}`)

// Without batching every line is sent as it is written. Ending the stream does not wait for
// the sends in flight, so the process is left to exit by itself once they are done (exiting on
// 'close' cut them off on a loaded machine).
setTimeout(() => transport.end(), 100)
setTimeout(() => { console.error('pino-loki did not finish within 20s'); process.exit(1) }, 20000).unref()
