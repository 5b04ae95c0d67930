"""A real webhook receiver for the tests: ``ThreadingHTTPServer`` on 127.0.0.1, in its own process
(:func:`pdm.tools.servers.webhook_main`, which ``pdm-edge soak`` runs too).

Usage: ``python tests/webhook_receiver.py PORT LOG [--answers 400,503:1] [--delay S]``

The HMAC key comes from ``PDM_WEBHOOK_SECRET``. Every POST is checked with
:func:`pdm.actions.webhook.verify` and appended to ``LOG`` as one JSON line
(``id``, ``valid``, ``status``, ``body``, ``headers``, ``t``) *before* it is
answered, flushed at once, so a test reads what arrived even after killing
this process. ``--answers`` lists the statuses of the first requests, in order
(``STATUS`` or ``STATUS:RETRY_AFTER_SECONDS``); later requests get 200.
``--delay`` holds every answer that long (a slow receiver). The test stops it
with SIGTERM and may start it again on the same port.
"""

from __future__ import annotations

from pdm.tools.servers import webhook_main

if __name__ == "__main__":
    webhook_main()
