"""What the fault tests do to a running local stack that the platform itself never does."""

from __future__ import annotations

import signal

from sluice.stack.errors import StackError
from sluice.stack.local import LocalStack
from sluice.stack.processes import Proc, Stopping, stop


def restart(stack: LocalStack, name: str, sig: signal.Signals = signal.SIGKILL) -> Proc:
    """Stop one component with ``sig`` and start it again as the supervisor would (``LocalStack.respawn``),
    without waiting for the supervisor: the test chooses the moment. Returns the new process, in the record."""
    state = stack.state()
    proc = state.find(name)
    if proc is None:
        raise StackError(f"no component {name!r} in this stack")
    with stack.state_file.editing() as current:  # the supervisor must not restart it meanwhile
        found = current.find(name)
        if found is not None:
            found.stopping = Stopping.RESTART
    stop(proc, sig, timeout=30, spare=frozenset(p.pid for p in state.procs))
    new = stack.respawn(proc, state.config)
    with stack.state_file.editing() as current:
        current.remove(proc)
        current.procs.append(new)
    return new
