"""The local stack's supervisor: what a Deployment's controller and the kubelet do for the chart's pods.

Every component the stack started (api-server, scheduler, dag-processor, triggerer, each worker, the
throwaway Redis/PostgreSQL) that dies is started again (a worker as a new worker of its pool, as a new pod
gets a new name; the rest as they were), with what was left of its process group
killed first, after a back-off like Kubernetes' CrashLoopBackOff: at once the first time, then 10 s, 20 s,
40 s ... up to 5 minutes, reset once it has run for 10 minutes. The restart count and the end of the dead
process's log are kept in the stack's record, and `sluice status` shows them. A worker stopped on purpose
(a warm shutdown by the autoscaler or `sluice down`) is not restarted. With ``sluice up --autoscale`` the
same process also runs the autoscaler (``sluice.stack.autoscaler``).

Run as ``python -m sluice.stack.supervisor <stack home>``; ``sluice up`` starts it.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sluice.stack.faults import death
from sluice.stack.local import LocalStack
from sluice.stack.processes import Kind, Proc
from sluice.stack.status import CORE

log = logging.getLogger("sluice.supervisor")
SUPERVISED = {*CORE, Kind.WORKER, Kind.REDIS, Kind.POSTGRES}
FIRST_DELAY, MAX_DELAY, HEALTHY_RUN = 10.0, 300.0, 600.0


def backoff(restarts: int, first: float = FIRST_DELAY) -> float:
    """Seconds to wait before restart number ``restarts + 1``: none for the first, then doubling from ``first``
    (10 s, as Kubernetes' CrashLoopBackOff; a stack's ``restart_backoff_seconds``) up to 5 minutes."""
    return 0.0 if restarts == 0 else min(MAX_DELAY, first * 2 ** (restarts - 1))


@dataclass
class Death:
    seen: float  # monotonic time the supervisor noticed it
    reason: str


class Supervisor:
    def __init__(self, home: Path) -> None:
        self.stack = LocalStack(home)
        self.deaths: dict[str, Death] = {}
        self.stopping = False
        self.autoscaler = None
        if self.stack.state().config.autoscale:
            from sluice.stack.autoscaler import Autoscaler

            self.autoscaler = Autoscaler(self.stack)

    def supervise_once(self, now: float) -> list[str]:
        """Restart every supervised component that died and whose back-off has passed; returns their names."""
        restarted = []
        state = self.stack.state()
        # Every death's reason first: starting a process (subprocess.Popen) collects other dead children's exit
        # statuses as it goes, so a reason read after a restart in this same pass could have lost its status.
        for proc in state.procs:
            if self._watched(proc) and proc.name not in self.deaths and not proc.alive():
                self.deaths[proc.name] = Death(now, death(proc))
                log.warning("%s (pid %s) died: %s", proc.name, proc.pid, self.deaths[proc.name].reason)
        for proc in state.procs:
            if not self._watched(proc):
                continue
            if proc.alive():
                self.deaths.pop(proc.name, None)
                continue
            died = self.deaths.get(proc.name)
            if died is None:
                died = self.deaths[proc.name] = Death(now, death(proc))
                log.warning("%s (pid %s) died: %s", proc.name, proc.pid, died.reason)
            restarts = proc.restarts
            if time.time() - proc.create_time >= HEALTHY_RUN:
                restarts = 0  # it had been running fine: no back-off, as Kubernetes resets it
            if now - died.seen < backoff(restarts, state.config.restart_backoff_seconds):
                continue
            who = f"{proc.worker.name} " if proc.worker is not None else ""
            proc.restarts, proc.last_exit = restarts, f"{time.strftime('%H:%M:%S')} {who}{died.reason}"
            try:
                new = self.stack.respawn(proc, state.config)
            except Exception as exc:  # it stays dead; tried again after the next back-off
                log.error("%s could not be started again: %s", proc.name, exc)
                proc.restarts = restarts + 1
                self._replace(proc, proc)
                self.deaths[proc.name] = Death(now, f"restart failed: {exc}")
                continue
            new.restarts = restarts + 1
            self._replace(proc, new)
            self.deaths.pop(proc.name, None)
            log.warning("%s started again as pid %s (restart %s)", proc.name, new.pid, restarts + 1)
            restarted.append(proc.name)
        return restarted

    @staticmethod
    def _watched(proc: Proc) -> bool:
        """Supervised, and not being stopped on purpose (a warm shutdown, a restart by someone else)."""
        return proc.kind in SUPERVISED and proc.stopping is None

    def _replace(self, old: Proc, new: Proc) -> None:
        with self.stack.state_file.editing() as current:
            found = current.find(old.name)
            if found is None or found.pid != old.pid:
                return  # stopped or replaced meanwhile (`sluice down`, a test's restart)
            current.procs[current.procs.index(found)] = new

    def run(self, tick: float = 1.0) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        log.info("supervising %s%s", self.stack.home, " with autoscaling" if self.autoscaler else "")
        while not self.stopping:
            now = time.monotonic()
            try:
                self.supervise_once(now)
                if self.autoscaler is not None:
                    self.autoscaler.poll_once(now)
            except Exception:  # a DB or broker hiccup must not end supervision
                log.exception("supervision pass failed; retrying")
            time.sleep(tick)
        log.info("supervisor stopped; components keep running until `sluice down`")

    def _stop(self, *_: object) -> None:
        self.stopping = True


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    if len(sys.argv) != 2:
        sys.exit("usage: python -m sluice.stack.supervisor <stack home>")
    Supervisor(Path(sys.argv[1])).run()


if __name__ == "__main__":
    main()
