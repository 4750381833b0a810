"""Which frames of a sampled stack are the user's own code: the rules the watchdog thread applies to
a slow callback's stack to name its *site* (the innermost frame of the user's code). Computed once at
install from the interpreter's paths and two environment variables, without importing anything:

- skipped: the standard library, code without a file (``<frozen ...>``, ``<string>``: e.g. the
  ``python -c`` line a multiprocessing worker starts with), loopwatch itself, and the servers and
  frameworks in ``FRAMEWORK_PACKAGES`` plus ``LOOPWATCH_SKIP_PACKAGES`` (comma separated) wherever
  they are installed;
- ``LOOPWATCH_USER_PACKAGES`` (comma separated) unset: every other installed package counts as the
  user's (a blocking call inside ``requests`` is named there); set: only those packages do, and the
  rest of site-packages is skipped too;
- any file outside these directories (the application's own tree) is the user's.

The longest matching directory decides, so site-packages inside the standard library's directory is
not standard library. With no frame of the user's on the stack, the site is the innermost frame.
"""
from __future__ import annotations

import os
import site
import sys
import sysconfig

FRAMEWORK_PACKAGES = (
    # servers
    "uvicorn", "gunicorn", "hypercorn", "h11", "h2", "hpack", "hyperframe", "httptools", "wsproto",
    "websockets", "uvloop", "watchfiles",
    # frameworks and their async plumbing
    "starlette", "fastapi", "anyio", "sniffio", "asgiref", "aiohttp", "aiosignal", "multidict", "yarl",
    "frozenlist",
    # test runners (a test's outermost frames are theirs)
    "pytest", "_pytest", "pluggy",
    "loopwatch",
)


def _names(variable: str) -> list[str]:
    return [name.strip() for name in os.environ.get(variable, "").split(",") if name.strip()]


def _dir(path: str) -> str:
    return os.path.join(os.path.abspath(path), "")


def site_dirs() -> list[str]:
    dirs = set()
    try:
        dirs.update(site.getsitepackages())
    except AttributeError:  # old virtualenv's site.py
        pass
    user_site = getattr(site, "getusersitepackages", lambda: None)()
    if user_site:
        dirs.add(user_site)
    dirs.update(p for p in sys.path if os.path.basename(p.rstrip(os.sep)) in ("site-packages", "dist-packages"))
    dirs.update(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    return sorted(_dir(d) for d in dirs)


def _package_prefixes(packages, dirs) -> list[str]:
    prefixes = []
    for d in dirs:
        for package in packages:
            prefixes.append(os.path.join(d, package, ""))
            prefixes.append(os.path.join(d, package + ".py"))
    return prefixes


def rules() -> tuple[list[str], list[str], list[str], list[str]]:
    """(skip, library, user, roots) path prefixes for ``_shim.set_attribution_rules``."""
    dirs = site_dirs()
    paths = sysconfig.get_paths()
    skip = sorted({_dir(paths[key]) for key in ("stdlib", "platstdlib")})
    skip.append("<")  # <frozen importlib._bootstrap>, <string>, <stdin>: no file of the user's
    skip.append(_dir(os.path.dirname(__file__)))
    skip += _package_prefixes(FRAMEWORK_PACKAGES + tuple(_names("LOOPWATCH_SKIP_PACKAGES")), dirs)
    user_packages = _names("LOOPWATCH_USER_PACKAGES")
    if user_packages:
        library, user = dirs, _package_prefixes(user_packages, dirs)
    else:
        library, user = [], list(dirs)
    roots = {_dir(p) for p in sys.path if p and os.path.isabs(p)} | set(dirs)
    try:
        roots.add(_dir(os.getcwd()))
    except OSError:  # the working directory was removed
        pass
    return skip, library, user, sorted(roots, key=len, reverse=True)


def summary() -> dict:
    """What loopwatch.status() says about the rule."""
    user = _names("LOOPWATCH_USER_PACKAGES")
    return {
        "user_packages": user or "every installed package but the skipped ones",
        "skipped_packages": list(FRAMEWORK_PACKAGES) + _names("LOOPWATCH_SKIP_PACKAGES"),
        "sampling": "by the watchdog thread, once the agent arms a slow callback (protocol 1.3)",
    }


def install() -> None:
    from . import _shim

    _shim.set_attribution_rules(*rules())
