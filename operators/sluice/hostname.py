"""``[core] hostname_callable``: what a task instance records as the host that ran it.

On a cluster (the chart) that is the pod's IP: the api-server fetches a running task's live log from
``http://<hostname>:<worker log port>``, and a Deployment's pod name resolves nowhere. On the local stack
every worker shares the machine, so the stack names each one (``highmem-2``) and the task instance's
``hostname`` says which worker, and so which pool, ran it. Without either, the host's name as Airflow's own
default records it.
"""

from __future__ import annotations

import os
import socket


def _host_name() -> str:
    """The host's canonical name, as Airflow's default ``hostname_callable`` gives it.

    Not ``socket.getfqdn()``: it takes the first alias of the host's address, which is ``localhost`` wherever
    ``/etc/hosts`` lists ``localhost`` first for that address (python/cpython#49254), a name under which every
    peer reaches itself.
    """
    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, None, 0, socket.SOCK_DGRAM, 0, socket.AI_CANONNAME)
    except OSError:
        return name
    return next((info[3] for info in infos if info[3]), name)


def pod_ip() -> str:
    return os.environ.get("POD_IP") or _host_name()


def worker_hostname() -> str:
    return os.environ.get("SLUICE_WORKER_NAME") or _host_name()
