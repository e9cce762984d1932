"""Build hook: a wheel carries the page's three.js, copied from node_modules at build time.

Everything else about the package is in pyproject.toml.
"""

import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithVendor(build_py):
    """Copy the front-end files into the package when node_modules has them; refuse to build a
    wheel whose page would load without three.js."""

    def run(self):
        if getattr(self, "editable_mode", False):  # `pip install -e .`: the checkout is the package
            return super().run()
        vendor = runpy.run_path(str(ROOT / "tools" / "vendor_assets.py"))
        if (ROOT / "node_modules").is_dir():
            vendor["copy"](ROOT)
        absent = vendor["missing"](ROOT)
        if absent:
            raise SystemExit("the page's front-end files are missing "
                             f"({', '.join(absent)}): run `npm ci` (or `make setup`) first")
        super().run()


setup(cmdclass={"build_py": BuildWithVendor})
