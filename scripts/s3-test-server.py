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

One thing moto does not do as S3 does is made so: a conditional write
(PUT or CompleteMultipartUpload with If-None-Match: * or If-Match) is
atomic on S3, while moto 5.2 checks the condition and then writes, so two
racing "only if absent" PUTs of one key can both succeed (seen in
RepositoryTest.RacingPublishersOneWinsAndTheLoserLeavesNothing/s3), and
two racing DELETEs of one key can raise KeyError inside moto. Here every
object write (PUT, POST, DELETE of a key) holds one lock from its check to
its write; the request body is read before it, and reads do not take it.

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

import threading  # noqa: E402

from moto.s3.responses import S3Response  # noqa: E402

_WRITES = threading.Lock()
_key_response = S3Response._key_response


def _key_response_atomic(self, request, full_url):
    if request.method in ("PUT", "POST", "DELETE"):
        with _WRITES:
            return _key_response(self, request, full_url)
    return _key_response(self, request, full_url)


S3Response._key_response = _key_response_atomic

from moto.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
