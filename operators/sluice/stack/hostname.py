"""``[core] hostname_callable`` for the local stack: a task instance records which worker ran it.

Every local worker shares the machine's hostname; the stack names each one (``highmem-2``) so the
task instance's ``hostname`` says which worker, and so which pool, ran it.
"""

from __future__ import annotations

import os
import socket


def worker_hostname() -> str:
    return os.environ.get("SLUICE_WORKER_NAME") or socket.getfqdn()
