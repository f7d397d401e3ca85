"""Build the repository's two images (``make images``): the ML step image and the platform image.

    .venv/bin/python tools/images.py build [--if-possible] [--only ml-steps|airflow]

The engine is ``sluice.launchers.engine.find_engine()`` (podman, else docker with a daemon), with this host's flags.
Where none is installed and we are root on a machine with apt-get, podman + runc + debootstrap are installed from
apt first (as tools/ensure_helm.py fetches helm). ``--if-possible`` turns "no engine" into one line and exit 0, so
``make test`` goes on and the container tests skip (or fail, under SLUICE_REQUIRE_CONTAINERS=1).

Image references are the chart's (charts/sluice/values.yaml: ``images.airflow`` and ``stepImages.ml-steps``), the
ones the platform config resolves, so a locally built image is the one a step names by default.

Each Dockerfile takes its base as ``ARG BASE_IMAGE`` (default: the official image). When that base is neither in
the local image store nor pullable within PULL_TIMEOUT seconds (no registry reachable), a base is made once from
Debian packages (debootstrap trixie minbase + python3, python3-venv, ...; the mirror is this machine's apt
source), imported as DEBIAN_BASE and reused; the same recipe then builds on it. The CA bundle pip is configured
with (PIP_CERT, pip's ``cert``, SSL_CERT_FILE) reaches the build as the secret ``ca``, never a layer.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from sluice.launchers import engine as engines

ROOT = Path(__file__).resolve().parents[1]
VALUES = ROOT / "charts" / "sluice" / "values.yaml"
WORK = ROOT / ".tools"  # gitignored; the debootstrap tree lives here only until it is imported
PULL_TIMEOUT = 20.0  # seconds: a registry that does not answer must not hang the build
BUILD_TIMEOUT = 3600.0
SOURCE = "https://github.com/sluice-ml/sluice"

# The base made from Debian packages where the official bases cannot be pulled. The tag names what is in it and
# is checked against the interpreter after import; change it with the suite or the packages.
DEBIAN_SUITE = "trixie"
DEBIAN_BASE = "localhost/sluice/debian-python:trixie-3.13"
DEBIAN_PYTHON = "3.13"
# What the official python:*-slim images carry besides Python (ca-certificates, netbase, tzdata), + venv support.
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates", "netbase", "tzdata")
DEBIAN_MIRROR = "http://deb.debian.org/debian"  # only where this machine's apt sources name no Debian mirror
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
APT_PACKAGES = ("podman", "runc", "debootstrap")


@dataclass(frozen=True)
class Image:
    key: str  # the name after --only
    ref: str  # repository:tag, from the chart's values
    dockerfile: Path
    context: Path
    title: str

    @property
    def tag(self) -> str:
        return self.ref.rsplit(":", 1)[1]

    def default_base(self) -> str:
        """The Dockerfile's ``ARG BASE_IMAGE=`` default: the official base."""
        found = re.search(r"^ARG BASE_IMAGE=(\S+)", self.dockerfile.read_text(), flags=re.M)
        if not found:
            raise SystemExit(f"{self.dockerfile.relative_to(ROOT)} declares no `ARG BASE_IMAGE=<default>`")
        return found.group(1).strip("\"'")


def images(values: Path = VALUES) -> list[Image]:
    """The two images, named as the chart's values name them (so the platform config resolves the same refs)."""
    doc = yaml.safe_load(values.read_text())
    platform, steps = doc["images"]["airflow"], doc["stepImages"]["ml-steps"]
    return [
        Image(
            "ml-steps",
            f"{steps['repository']}:{steps['tag']}",
            ROOT / "images" / "ml-steps" / "Dockerfile",
            ROOT / "images" / "ml-steps",
            "Sluice ML steps",
        ),
        Image(
            "airflow",
            f"{platform['repository']}:{platform['tag']}",
            ROOT / "images" / "airflow" / "Dockerfile",
            ROOT,
            "Sluice platform (Apache Airflow)",
        ),
    ]


def say(message: str) -> None:
    print(f"images: {message}", flush=True)


# --- the engine -------------------------------------------------------------------------------------------------


def _apt_install(packages: Sequence[str]) -> bool:
    """apt-get install as root (apt-get update first when no package lists are present or the install fails)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    lists = Path("/var/lib/apt/lists")
    if not any(lists.glob("*_Packages*")):
        subprocess.run(["apt-get", "update"], env=env, check=False)
    if subprocess.run(install, env=env, check=False).returncode == 0:
        return True
    subprocess.run(["apt-get", "update"], env=env, check=False)
    return subprocess.run(install, env=env, check=False).returncode == 0


def ensure_engine() -> tuple[engines.Engine | None, str]:
    """The engine (installing podman + runc + debootstrap from apt where none is found and we are root with
    apt-get), or None and why not."""
    try:
        return engines.find_engine(), ""
    except engines.EngineMissing as exc:
        missing = str(exc)
    if os.environ.get(engines.ENV_ENGINE):
        return None, missing  # an engine was named: install nothing else
    if os.geteuid() != 0:
        return None, f"{missing} (not root: nothing installed)"
    if not shutil.which("apt-get"):
        return None, f"{missing} (no apt-get to install podman with)"
    say(f"no container engine: installing {' '.join(APT_PACKAGES)} from apt")
    if not _apt_install(APT_PACKAGES):
        return None, f"{missing} (`apt-get install {' '.join(APT_PACKAGES)}` failed)"
    engines.find_engine.cache_clear()
    try:
        return engines.find_engine(), ""
    except engines.EngineMissing as exc:
        return None, f"installed {' '.join(APT_PACKAGES)} from apt, yet: {exc}"


# --- what the build is given --------------------------------------------------------------------------------------


def git_revision() -> str:
    try:
        done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def ca_bundle() -> Path | None:
    """The CA bundle pip is configured with here (PIP_CERT, pip's `cert` setting, SSL_CERT_FILE), if any."""
    named = [os.environ.get("PIP_CERT")]
    try:
        listing = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        listing = ""
    named += re.findall(r"^[\w:.-]*\.cert='([^']+)'", listing, flags=re.M)
    named.append(os.environ.get("SSL_CERT_FILE"))
    return next((Path(p) for p in named if p and Path(p).is_file()), None)


def debian_mirror(sources: Sequence[Path] = APT_SOURCES) -> str:
    """The Debian archive this machine's apt uses (deb822 `URIs:` or one-line `deb URI suite`), not -security."""
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text()
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, flags=re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, flags=re.M)
            if uris and suites and not any(s.endswith("-security") for s in suites.group(1).split()):
                return uris.group(1)
        for line in text.splitlines():
            found = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
            if found and not found.group(2).endswith("-security"):
                return found.group(1)
    return DEBIAN_MIRROR


# --- bases ----------------------------------------------------------------------------------------------------------


def can_use(engine: engines.Engine, ref: str) -> bool:
    """The image is in the local store, or a pull succeeds within PULL_TIMEOUT seconds."""
    if engine.image_exists(ref):
        return True
    try:
        return engine.run("pull", "--quiet", ref, timeout=PULL_TIMEOUT).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _mounts_under(tree: Path) -> list[str]:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    return sorted((m for m in mounts if Path(m).is_relative_to(tree)), reverse=True)


def _remove_tree(tree: Path) -> None:
    """Remove the debootstrap tree, never through a mount: debootstrap mounts /proc and /sys (and, in a container,
    binds the host's /dev) inside its target, and a failed run may leave them there."""
    for point in _mounts_under(tree):
        subprocess.run(["umount", "-l", point], check=False)
    if _mounts_under(tree):
        raise SystemExit(f"images: {tree} still has mounts ({', '.join(_mounts_under(tree))}): unmount, then remove it")
    shutil.rmtree(tree, ignore_errors=True)


def make_debian_base(engine: engines.Engine) -> None:
    """debootstrap the base into .tools/, import it as DEBIAN_BASE, check its Python, remove the tree."""
    if not shutil.which("debootstrap") and not _apt_install(["debootstrap"]):
        raise SystemExit(
            f"images: the official bases cannot be pulled and making {DEBIAN_BASE} needs debootstrap: "
            "apt-get install debootstrap (as root), or make the official bases pullable"
        )
    mirror = debian_mirror()
    WORK.mkdir(exist_ok=True)
    tree = Path(tempfile.mkdtemp(prefix="debian-base-", dir=WORK))
    tree.chmod(0o755)  # the image's / (mkdtemp makes it 0700)
    started = time.monotonic()
    say(f"making {DEBIAN_BASE}: debootstrap {DEBIAN_SUITE} minbase + {', '.join(DEBIAN_PACKAGES)} from {mirror}")
    try:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(DEBIAN_PACKAGES)}",
                DEBIAN_SUITE,
                str(tree),
                mirror,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # Downloaded packages and lists, and this host's resolver and name: the engine provides those at run time.
        leftovers = [*(tree / "var/cache/apt/archives").glob("*"), *(tree / "var/lib/apt/lists").glob("*")]
        for path in [*leftovers, tree / "etc/resolv.conf", tree / "etc/hostname"]:
            if path.is_file() or path.is_symlink():
                path.unlink()
        packages = " ".join(DEBIAN_PACKAGES)
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            'CMD ["/bin/bash"]',
            "LABEL org.opencontainers.image.title=debian-python",
            f"LABEL org.opencontainers.image.version={DEBIAN_BASE.rsplit(':', 1)[1]}",
            f'LABEL org.opencontainers.image.description="debootstrap {DEBIAN_SUITE} minbase + {packages}"',
        ]
        tar = subprocess.Popen(["tar", "-C", str(tree), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        flags = [arg for change in changes for arg in ("--change", change)]
        imported = subprocess.run(engine.command("import", *flags, "-", DEBIAN_BASE), stdin=tar.stdout, check=False)
        if tar.stdout:
            tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise SystemExit(f"images: importing {tree} as {DEBIAN_BASE} failed")
    finally:
        _remove_tree(tree)
    found = engine.run(
        "run", "--rm", *engine.limit_args, "--network", "none", DEBIAN_BASE,
        "python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])",
    )  # fmt: skip
    if found.stdout.strip() != DEBIAN_PYTHON:
        engine.run("rmi", DEBIAN_BASE)
        raise SystemExit(
            f"images: {DEBIAN_BASE} has Python {found.stdout.strip() or '?'} ({found.stderr.strip()}), "
            f"not {DEBIAN_PYTHON}: change DEBIAN_BASE/DEBIAN_PYTHON in tools/images.py and the step lock's Python"
        )
    say(f"made {DEBIAN_BASE} in {time.monotonic() - started:.0f} s")


def base_for(engine: engines.Engine, image: Image) -> str:
    """The official base where it is here or pullable, else the Debian-made one (made once, then reused)."""
    official = image.default_base()
    if can_use(engine, official):
        return official
    say(f"{official} is not here and cannot be pulled (within {PULL_TIMEOUT:.0f} s): building on {DEBIAN_BASE}")
    if not engine.image_exists(DEBIAN_BASE):
        make_debian_base(engine)
    return DEBIAN_BASE


# --- builds ---------------------------------------------------------------------------------------------------------


def build(engine: engines.Engine, image: Image, base: str, revision: str, ca: Path | None) -> None:
    args = [
        "build",
        *engine.limit_args,
        "--network",
        "host",
        "--file",
        str(image.dockerfile),
        "--tag",
        image.ref,
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--build-arg",
        f"REVISION={revision}",
        "--build-arg",
        f"VERSION={image.tag}",
        # Also as labels: buildah (podman 4.3) reuses a cached `LABEL ...="${REVISION}"` step when only the
        # argument's value changed, which would keep the previous commit's revision on the image.
        "--label",
        f"org.opencontainers.image.revision={revision}",
        "--label",
        f"org.opencontainers.image.version={image.tag}",
    ]
    if ca is not None:
        args += ["--secret", f"id=ca,src={ca}"]
    started = time.monotonic()
    previous = engine.image_id(image.ref)
    say(f"building {image.ref} on {base}")
    done = subprocess.run(engine.command(*args, str(image.context)), timeout=BUILD_TIMEOUT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"images: building {image.ref} failed (exit {done.returncode})")
    image_id = engine.image_id(image.ref) or "?"
    if previous and previous != image_id:
        # The image this ref named before (each commit's labels make a new one): removed unless something uses it
        # (a container, another tag); its layers stay as long as the new image shares them.
        engine.run("rmi", previous)
    size = engine.run("image", "inspect", "--format", "{{.Size}}", image.ref).stdout.strip()
    megabytes = f"{int(size) / 1e6:.0f} MB" if size.isdigit() else "size ?"
    say(f"built {image.ref}  id {image_id[7:19]}  {megabytes}  in {time.monotonic() - started:.0f} s")


def cmd_build(args: argparse.Namespace) -> int:
    engine, reason = ensure_engine()
    if engine is None:
        if args.if_possible:
            say(f"container images not built: {reason}; container tests will skip")
            return 0
        hint = "" if engines.INSTALL_HINT in reason else f"; {engines.INSTALL_HINT}"
        print(f"images: {reason}{hint}", file=sys.stderr)
        return 1
    wanted = [i for i in images() if args.only in (None, i.key)]
    revision, ca = git_revision(), ca_bundle()
    say(f"engine {engine.name} ({engine.path}); revision {revision[:12]}; CA bundle {ca or 'none (not passed)'}")
    for image in wanted:
        build(engine, image, base_for(engine, image), revision, ca)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/images.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the images under the chart's refs")
    b.add_argument("--if-possible", action="store_true", help="no engine: say why and exit 0 (make test)")
    b.add_argument("--only", choices=[i.key for i in images()], help="build one image")
    b.set_defaults(func=cmd_build)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
