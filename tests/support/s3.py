"""moto's S3 server on a free local port, standing in for MinIO or any S3 (no object store can run here)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """The server's endpoint URL for the duration of the block."""
    from moto.server import ThreadedMotoServer
    from sluice.stack.services import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
