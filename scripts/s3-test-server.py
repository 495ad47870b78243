#!/usr/bin/env python3
"""moto's S3 server for the test suite, without two per-request costs.

Runs moto_server's own entry point (moto.server.main, same arguments: -H
HOST -p PORT; it prints "Running on http://HOST:PORT" as moto_server does),
so the S3 protocol, the stored objects and every answer are moto's. Two
things moto 5.2 does on every request, which the suite does not need, are
done once instead:

  * Finding the service a request is for lists moto's package directory
    and stats each of its ~150 entries (backends.list_of_moto_modules),
    under a lock that every request takes. The listing cannot change while
    the server runs, so it is made once at start.
  * Every request is logged to stderr (werkzeug's request log). Startup
    lines and errors are still logged.

Measured (docs/performance.md, "Jumbo units, and moto without its
per-request overhead"): moto's CPU over the release suite's S3 tests 64-67
s -> 41-51 s. scripts/test.sh uses this when moto imports in python3, else
plain moto_server.
"""
import sys

from moto import backends

_MODULES = tuple(backends.list_of_moto_modules())
backends.list_of_moto_modules = lambda: _MODULES

from werkzeug import serving  # noqa: E402

serving.WSGIRequestHandler.log_request = lambda self, *args, **kwargs: None

from moto.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
