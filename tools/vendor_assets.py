"""Copy the page's front-end files from node_modules into the package (never committed).

The map page imports three.js from ``/static/vendor/``, so the files must lie inside the package
for ``serve`` to find them, in a checkout and in an installed wheel alike. ``make setup`` runs this
after ``npm ci``; ``setup.py`` runs it when a wheel is built. One list, used by both.

    python tools/vendor_assets.py [ROOT]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

#: node_modules path -> path under src/soundatlas/web/static/vendor
FILES = {
    "three/build/three.module.js": "three/three.module.js",
    "three/build/three.core.js": "three/three.core.js",
    "three/examples/jsm/controls/OrbitControls.js": "three/addons/controls/OrbitControls.js",
    "three/LICENSE": "three/LICENSE",
}

VENDOR = Path("src/soundatlas/web/static/vendor")


def missing(root: Path) -> list[str]:
    """The vendored files not yet in the package."""
    return [dst for dst in FILES.values() if not (root / VENDOR / dst).is_file()]


def copy(root: Path) -> None:
    """Replace the vendor folder with fresh copies from ``root/node_modules``."""
    modules = root / "node_modules"
    absent = [src for src in FILES if not (modules / src).is_file()]
    if absent:
        raise SystemExit(f"{modules}: {', '.join(absent)} missing; run `npm ci` first "
                         "(`make setup` does)")
    vendor = root / VENDOR
    shutil.rmtree(vendor, ignore_errors=True)
    for src, dst in FILES.items():
        (vendor / dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(modules / src, vendor / dst)


if __name__ == "__main__":
    copy(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
