"""``[core] hostname_callable``: what a task instance records as the host that ran it.

On a cluster (the chart) that is the pod's IP: the api-server fetches a running task's live log from
``http://<hostname>:<worker log port>``, and a Deployment's pod name resolves nowhere. On the local stack
every worker shares the machine, so the stack names each one (``highmem-2``) and the task instance's
``hostname`` says which worker, and so which pool, ran it.
"""

from __future__ import annotations

import os
import socket


def pod_ip() -> str:
    return os.environ.get("POD_IP") or socket.getfqdn()


def worker_hostname() -> str:
    return os.environ.get("SLUICE_WORKER_NAME") or socket.getfqdn()
