"""Let the tasks a Celery pool process runs from one DAG file share one parse of that file.

Stock Airflow parses the task's DAG file in every task process, so every task pays for building every
operator of its file (1,000 operators: ~0.2 s of CPU per task on the bench machine). With the cache on
(``SLUICE_WORKER_DAG_CACHE``, the chart's ``tuning.workerDagCache``) the pool process parses the file just
before Airflow forks the task process from it (Celery's ``task_prerun``), and the task process takes its
DAG from the copy it inherits: its own changes stay in its own copy-on-write pages. A parse is reused only
while a fresh one could not differ in ways stock Airflow would show:

- the DAG file and every module it imported from the bundle are unchanged (mtime, size, inode);
- it is younger than ``[dag_processor] min_file_process_interval`` when the task starts, the age the
  scheduler's own copy of a DAG may have (top-level code that reads the clock or other files is no staler
  than that); the task process takes the parse its pool process checked for it, however long the fork took;
- the file's top-level code asked for no Variable or Connection (those files parse in every task);
- the bundle is the unversioned local DAG folder.

Anything else, and any error here, leaves the task process to Airflow's own parse. ``sluice.worker.patches``
installs it at worker start, only where the Airflow symbols it relies on check out (``sluice.compat``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from sluice import compat
from sluice.worker.settings import env_flag

log = logging.getLogger(__name__)

ENV = "SLUICE_WORKER_DAG_CACHE"
MAX_PARSES = 16  # distinct parses per pool process, least recently used out first

Stat = tuple[int, int, int]


def enabled(value: str | None = None) -> bool:
    return env_flag(ENV, "tuning.workerDagCache", value)


def _stat(path: str) -> Stat:
    try:
        found = os.stat(path)
    except OSError:
        return (-1, -1, -1)
    return (found.st_mtime_ns, found.st_size, found.st_ino)


@dataclass
class Parse:
    bag: Any  # Airflow's BundleDagBag, parsed in the pool process
    modules: dict[str, ModuleType]  # what it imported from the bundle (kept out of the pool's sys.modules)
    files: dict[str, Stat]  # the DAG file and those modules' files, as they were when parsed
    parsed_at: float
    reusable: bool  # False: the DAG is not in the file, the file failed, or it asked for Variables/Connections

    def unchanged(self) -> bool:
        return all(_stat(path) == stat for path, stat in self.files.items())

    def current(self, max_age: float) -> bool:
        return time.monotonic() - self.parsed_at < max_age and self.unchanged()


def bundle_modules(bundle_path: str) -> dict[str, ModuleType]:
    root = os.path.join(bundle_path, "")
    return {
        name: module
        for name, module in list(sys.modules.items())
        if isinstance(file := getattr(module, "__file__", None), str) and file.startswith(root)
    }


@contextmanager
def _parsing_context(dag_id: str) -> Iterator[None]:
    """Airflow's parsing context for ``dag_id``, as the task runner sets it around its parse (restored after)."""
    dag_env, task_env = compat.parsing_context_env()
    saved = {key: os.environ.pop(key, None) for key in (dag_env, task_env)}
    os.environ[dag_env] = dag_id
    try:
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value


@contextmanager
def _runtime_calls_refused() -> Iterator[list[str]]:
    """Top-level code that asks for Variables or Connections marks its file as one to parse per task."""
    context = compat.runtime_calls()
    asked: list[str] = []

    def refusing(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            asked.append(name)
            raise RuntimeError(f"{name}() while the worker pre-parses the DAG file ({ENV}): parsed per task instead")

        return call

    saved = {name: getattr(context, name) for name in compat.RUNTIME_CALLS}
    for name in saved:
        setattr(context, name, refusing(name))
    try:
        yield asked
    finally:
        for name, call in saved.items():
            setattr(context, name, call)


def workload_target(
    workload: str, bundle_path_of: Callable[[str], str | None] | None = None
) -> tuple[str, str, str, str] | None:
    """(DAG file, dag_id, bundle path, bundle name) of an ExecuteTask workload in the local DAG folder;
    ``bundle_path_of`` says where a bundle is (default: ``local_bundle_path``)."""
    try:
        data = json.loads(workload)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("type") != "ExecuteTask":
        return None
    bundle = data.get("bundle_info") or {}
    if bundle.get("version") is not None:
        return None
    name = bundle.get("name")
    if not isinstance(name, str):
        return None
    bundle_path = (bundle_path_of or local_bundle_path)(name)
    if bundle_path is None:
        return None
    return os.fspath(Path(bundle_path, data["dag_rel_path"])), data["ti"]["dag_id"], bundle_path, name


Key = tuple[str, str]  # (DAG file, dag_id)


@dataclass
class DagCache:
    """The parses one pool process keeps, and the one it prepared for the task it is about to fork.

    ``install()`` makes the only instance (``current()``); ``uninstall()`` drops it with everything it held.
    """

    original: type  # Airflow's BundleDagBag: what parses, in the pool process and in a task that cannot reuse
    max_age: float  # [dag_processor] min_file_process_interval: the oldest parse a task may start from
    max_parses: int = MAX_PARSES
    parses: OrderedDict[Key, Parse] = field(default_factory=OrderedDict)  # least recently used first
    # The (file, DAG) pair and parse prepare() checked for the task about to start: the one its task process
    # may take. Judged at the task's start only, so a parse that turns 30 s old during the fork still counts.
    ready: tuple[Key, Parse] | None = None
    bundle_paths: dict[str, str | None] = field(default_factory=dict)  # bundle name -> local path, or None
    preparing: threading.Lock = field(default_factory=threading.Lock)  # a threads pool runs tasks at once

    def parse(self, path: str, dag_id: str, bundle_path: str, bundle_name: str) -> Parse:
        for name in bundle_modules(bundle_path):
            del sys.modules[name]  # the parse imports the bundle's modules afresh, so all of them are fingerprinted
        files = {path: _stat(path)}
        started = time.monotonic()
        with _parsing_context(dag_id), _runtime_calls_refused() as asked:
            bag = self.original(
                dag_folder=path,
                safe_mode=False,
                load_op_links=False,
                bundle_path=Path(bundle_path),
                bundle_name=bundle_name,
            )
        modules = bundle_modules(bundle_path)
        for name, module in modules.items():
            # The pool process itself keeps none of them: a task that parses for itself imports them fresh.
            del sys.modules[name]
            assert module.__file__ is not None  # bundle_modules keeps only modules loaded from a file
            files.setdefault(module.__file__, _stat(module.__file__))
        reusable = not asked and not bag.import_errors and dag_id in bag.dags
        return Parse(bag, modules, files, started, reusable)

    def prepare(self, path: str, dag_id: str, bundle_path: str, bundle_name: str) -> Parse:
        """In the pool process, before the fork: make sure a current parse of ``path`` is there to inherit."""
        key = (path, dag_id)
        known = self.parses.get(key)
        if known is not None and known.current(self.max_age):
            self.parses.move_to_end(key)
            self.ready = (key, known)
            return known
        parsed = self.parse(path, dag_id, bundle_path, bundle_name)
        for stale in [kept for kept, old in self.parses.items() if kept[0] == path and not old.current(self.max_age)]:
            del self.parses[stale]
        # One parse serves every DAG the file built (a file that honours the parsing context builds only one).
        for served in sorted(parsed.bag.dags) if parsed.reusable else [dag_id]:
            self.parses.pop((path, served), None)
            self.parses[(path, served)] = parsed
        self.parses.move_to_end(key)
        while len({id(kept) for kept in self.parses.values()}) > self.max_parses:
            self.parses.popitem(last=False)
        self.ready = (key, parsed)
        return parsed

    def lookup(self, dag_folder: str | os.PathLike[str] | None) -> Any | None:
        """In the task process: the parse prepared for this task, if it may be used instead of parsing again."""
        from airflow.sdk import get_parsing_context

        dag_id = get_parsing_context().dag_id
        if dag_folder is None or dag_id is None or self.ready is None:
            return None
        key, known = self.ready
        if key != (os.fspath(dag_folder), dag_id) or not known.reusable or not known.unchanged():
            return None
        sys.modules.update(known.modules)  # the task sees the very modules its DAG was built from
        age = time.monotonic() - known.parsed_at
        log.info("DAG %s taken from the worker's parse of %s (%.1f s old; %s)", dag_id, dag_folder, age, ENV)
        return known.bag

    def local_bundle_path(self, name: str) -> str | None:
        if name not in self.bundle_paths:
            self.bundle_paths[name] = local_bundle_path(name)
        return self.bundle_paths[name]

    def on_task_prerun(self, sender: Any = None, args: Any = None, **_: Any) -> None:
        """Celery's ``task_prerun`` in the pool process: pre-parse the DAG file of the task about to be forked."""
        if getattr(sender, "name", None) != "execute_workload" or not args:
            return
        self.ready = None
        try:
            target = workload_target(args[0], self.local_bundle_path)
            if target is not None:
                with self.preparing:
                    self.prepare(*target)
        except Exception:  # the task process then parses for itself, as stock Airflow does
            log.warning("%s: could not pre-parse the task's DAG file; the task parses it itself", ENV, exc_info=True)


def local_bundle_path(name: str) -> str | None:
    """The folder of DAG bundle ``name`` when it is Airflow's unversioned local bundle, else None."""
    from airflow.dag_processing.bundles.local import LocalDagBundle
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    bundle = DagBundlesManager().get_bundle(name=name, version=None)
    return os.fspath(bundle.path) if isinstance(bundle, LocalDagBundle) else None


def caching_bag_class(original: type) -> type:
    """A subclass of Airflow's BundleDagBag whose instances, built where the installed cache prepared a reusable
    parse of the same file and DAG, take that parse's contents (its very DAG objects) instead of parsing again;
    built anywhere else, they parse as Airflow's own. Either way they are BundleDagBags, built the usual way."""

    class CachingBundleDagBag(original):  # type: ignore[misc]
        def __init__(self, dag_folder: Any = None, *args: Any, **kwargs: Any) -> None:
            inherited = None
            cache = _installed
            if cache is not None:
                try:
                    inherited = cache.lookup(dag_folder)
                except Exception:  # the task then parses its file itself, as stock Airflow does
                    log.warning("%s: could not take the worker's parse; parsing the DAG file", ENV, exc_info=True)
            if inherited is None:
                super().__init__(dag_folder, *args, **kwargs)
            else:
                self.__dict__.update(inherited.__dict__)  # its dags, errors and settings: the parse, not a copy of it

    CachingBundleDagBag.__qualname__ = CachingBundleDagBag.__name__ = f"Caching{original.__name__}"
    return CachingBundleDagBag


_installed: DagCache | None = None


def current() -> DagCache | None:
    """The pool process's cache while the patch is installed."""
    return _installed


def install() -> None:
    """Put the caching BundleDagBag in Airflow's place and pre-parse before each task (idempotent).

    Called by ``sluice.worker.patches`` at worker start, once ``sluice.compat`` has checked the symbols.
    """
    global _installed
    if _installed is not None:
        return
    from airflow.configuration import conf
    from celery.signals import task_prerun

    dagbag = compat.bundle_dag_bag_module()
    max_age = float(conf.getint("dag_processor", "min_file_process_interval", fallback=30))
    cache = DagCache(original=dagbag.BundleDagBag, max_age=max_age)
    dagbag.BundleDagBag = caching_bag_class(cache.original)
    task_prerun.connect(cache.on_task_prerun, weak=False, dispatch_uid=__name__)
    _installed = cache


def uninstall() -> None:
    global _installed
    cache, _installed = _installed, None
    if cache is None:
        return
    from celery.signals import task_prerun

    compat.bundle_dag_bag_module().BundleDagBag = cache.original
    task_prerun.disconnect(dispatch_uid=__name__)
