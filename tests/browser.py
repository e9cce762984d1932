"""The browser the web tests (and ``benchmarks/bench_web.py``) drive: Debian's ``chromium``
package, which ``make test`` installs, headless through Playwright with WebGL in software.
Where the system has no such package (Ubuntu ships Chromium as a snap), the Chromium that
``.venv/bin/playwright install chromium`` downloads serves instead.

Tests import it as ``from browser import ...``; a test that needs the browser calls
:func:`require_chromium`, which skips it, naming the package, when the browser is missing.
"""

from __future__ import annotations

import os
import shutil

__all__ = ["PACKAGE", "MISSING", "LAUNCH_ARGS", "VIEWPORT", "HOOK", "find_chromium",
           "require_chromium", "launch"]

PACKAGE = "chromium"  # Debian's package, and the command it installs
MISSING = (f"Debian's {PACKAGE} package is not installed (no `{PACKAGE}` on PATH): "
           f"`make test` installs it (apt-get install {PACKAGE}); where the system has no such "
           "package, `.venv/bin/playwright install chromium` gives one")
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
    # WebGL in software: SwiftShader through ANGLE, asked for explicitly (the automatic fallback
    # to it is deprecated and may go away)
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
]
VIEWPORT = {"width": 1280, "height": 800}
HOOK = "window.soundatlas"  # the page's automation hook (documented at the top of app.js)


def find_chromium() -> str | None:
    """The path of the ``chromium`` command on PATH, else of the Chromium Playwright
    downloaded (``playwright install chromium``), or None when there is neither."""
    path = shutil.which(PACKAGE)
    if path is not None:
        return path
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            path = p.chromium.executable_path
    except Exception:  # no Playwright, or its driver cannot start: no browser to drive
        return None
    return path if path and os.access(path, os.X_OK) else None


def require_chromium() -> str:
    """The path of ``chromium``; skips the calling test (or module, at import) when missing.

    Returns
    -------
    str
        The executable Playwright is to launch.
    """
    import pytest

    path = find_chromium()
    if path is None:
        pytest.skip(MISSING, allow_module_level=True)
    return path


def launch(playwright, executable: str):
    """Headless Chromium at ``executable`` with :data:`LAUNCH_ARGS`.

    Parameters
    ----------
    playwright
        The object ``sync_playwright()`` enters as.
    executable
        The browser, from :func:`require_chromium` or :func:`find_chromium`.

    Returns
    -------
    playwright.sync_api.Browser
    """
    return playwright.chromium.launch(executable_path=executable, headless=True,
                                      args=LAUNCH_ARGS)
