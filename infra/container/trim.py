"""Remove from an image's site-packages what modelbay never imports, by the Lambda layer's own list.

Usage: python3 trim.py LAYER_MAKEFILE SITE_PACKAGES

The list lives in infra/layer/Makefile (TRIM_PACKAGES, TRIM_DIRS; tests/test_package_size.py
imports both apps with those packages blocked). An image differs from the layer in two ways
only: no Lambda runtime provides boto3 here, and the server runs the `modelbay` CLI, which needs
click and registers the conversion commands (onnxruntime.quantization imports onnxruntime.transformers).
Bytecode stays: the root filesystem is read-only at run time, so it is compiled now or never.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

# The layer trims these because the Lambda runtime has them or its handlers never import them;
# an image has to bring them.
NEEDED_IN_IMAGES = {"boto3", "botocore", "s3transfer", "jmespath", "click", "onnxruntime/transformers"}


def make_list(makefile: str, var: str) -> list[str]:
    m = re.search(rf"^{var} :=(.*?)(?<!\\)\n", makefile, re.DOTALL | re.MULTILINE)
    if m is None:
        raise SystemExit(f"{var} not found in the layer Makefile")
    return m.group(1).replace("\\", " ").split()


def trim(makefile: str, site: Path) -> list[str]:
    removed = []
    packages = [p for p in make_list(makefile, "TRIM_PACKAGES") if p not in NEEDED_IN_IMAGES]
    names = {p.lower().replace("-", "_") for p in packages}
    for entry in site.iterdir():
        dist = entry.name.split("-")[0].lower() if entry.name.endswith(".dist-info") else None
        if entry.name.lower() in names or entry.name.lower().removesuffix(".py") in names or dist in names:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            removed.append(entry.name)
    for rel in make_list(makefile, "TRIM_DIRS"):
        if rel not in NEEDED_IN_IMAGES and (site / rel).is_dir():
            shutil.rmtree(site / rel)
            removed.append(rel)
    return removed


if __name__ == "__main__":
    makefile, site = Path(sys.argv[1]).read_text(), Path(sys.argv[2])
    print("trimmed:", " ".join(sorted(trim(makefile, site))))
