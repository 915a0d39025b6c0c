// Pushes three lines to Sawmill through winston-loki; MODE is `json` or `protobuf` (snappy).
// Usage: node winston_loki.js URL RUN_ID MODE
const winston = require('winston')
const LokiTransport = require('winston-loki')

const [url, run, mode] = process.argv.slice(2)
let failed = null
const transport = new LokiTransport({
  host: url,
  json: mode === 'json',
  labels: { client: 'winston-loki', mode, run },
  format: winston.format.printf((info) => info.message),
  interval: 0.2,
  gracefulShutdown: false,
  onConnectionError: (err) => { failed = err }
})
const logger = winston.createLogger({ level: 'debug', transports: [transport] })

logger.info(`winston ${mode} line 1 run=${run}`)
logger.warn(`winston ${mode} line 2 run=${run}`)
logger.error(`winston ${mode} line 3 run=${run}`)

transport.flush().then(() => {
  transport.close && transport.close()
  if (failed) {
    console.error('push failed:', failed)
    process.exit(1)
  }
  process.exit(0)
}, (err) => {
  console.error('flush failed:', err)
  process.exit(1)
})
