"""Pushes three lines to Sawmill through python-logging-loki's LokiHandler (JSON push).

Usage: python3 python_logging_loki.py URL RUN_ID
"""
import logging
import sys

import logging_loki

url, run = sys.argv[1], sys.argv[2]
# Errors must fail the script, not be printed and swallowed by logging.
logging.raiseExceptions = True


class StrictHandler(logging_loki.LokiHandler):
    def handleError(self, record):
        raise


handler = StrictHandler(
    url=url + "/loki/api/v1/push",
    tags={"client": "python-logging-loki", "run": run},
    version="1",
)
log = logging.getLogger("sawmill-test")
log.setLevel(logging.DEBUG)
log.addHandler(handler)
log.info("python line 1 run=%s", run)
log.warning("python line 2 run=%s", run)
log.error("python line 3 run=%s", run, extra={"tags": {"extra_tag": "yes"}})
handler.close()
