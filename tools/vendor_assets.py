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
STAMP = ".installed"  #: the Makefile's mark that the folder is up to date (kept by copy)


def missing(root: Path) -> list[str]:
    """The vendored files not yet in the package."""
    return [dst for dst in FILES.values() if not (root / VENDOR / dst).is_file()]


def copy(root: Path) -> None:
    """Bring the vendor folder up to date from ``root/node_modules``, in place: a file that is
    already the same is left alone, one that differs is replaced by a rename, and only files
    the list no longer names are removed. The folder is never emptied (a wheel built from a
    checkout whose page is being served, by the tests say, would have taken three.js from under
    it), and ``make``'s stamp in it stays (else the next ``make`` ran ``npm ci`` again)."""
    modules = root / "node_modules"
    absent = [src for src in FILES if not (modules / src).is_file()]
    if absent:
        raise SystemExit(f"{modules}: {', '.join(absent)} missing; run `npm ci` first "
                         "(`make setup` does)")
    vendor = root / VENDOR
    for src, dst in FILES.items():
        target = vendor / dst
        data = (modules / src).read_bytes()
        if target.is_file() and target.read_bytes() == data:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{target.name}.part")
        part.write_bytes(data)
        part.replace(target)
    wanted = {vendor / dst for dst in FILES.values()}
    for path in sorted(vendor.rglob("*"), reverse=True):  # files before their folders
        if path.is_file() and path not in wanted and path.name != STAMP:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


if __name__ == "__main__":
    copy(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
