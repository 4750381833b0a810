#!/usr/bin/env python3
"""The runtime matrix: every Python the machine has, with the stack users install, under test.

Environments (an interpreter and a venv of the repository's own):
  debian-3.11        Debian's /usr/bin/python3 with Debian's packages (uvicorn 0.17, uvloop 0.17, ...):
                     the venv scripts/build.sh makes ($VENV, default .venv)
  debian-3.11-pypi   Debian's python3 with the newest PyPI releases (requirements/pypi-stack.txt): the
                     demo's venv, and the one environment a fresh Debian 12 always has
  cpython-3.10 .. cpython-3.13
                     pyenv's interpreters (`pyenv prefix 3.X`) with the same PyPI stack; one that is
                     not on the machine is a SKIP with that reason, never a pass
Every PyPI venv gets the shim by `pip install ./shim` with ordinary build isolation (setuptools
from PyPI).

Suites (pytest; results kept as JUnit XML in build/matrix/<env>/<suite>.xml):
  python    tests/python: the shim on asyncio and uvloop, stock-behaviour comparisons, lifetimes
  servers   tests/e2e/test_servers.py: uvicorn (httptools, h11), gunicorn, hypercorn, aiohttp
  e2e       tests/e2e: the whole end-to-end suite (servers included)
  wheel     tests/wheel: python -m build --wheel, auditwheel, the wheel on a system with no compiler

    python3 scripts/matrix.py setup ENV|all     make (or refresh) the venvs
    python3 scripts/matrix.py run ENV SUITE     run one suite in one env (exit 77: SKIP, env missing)
    python3 scripts/matrix.py newest            the name of the newest CPython env present
    python3 scripts/matrix.py print             the Python x loop x server table of what ran

Standard library only: it runs with Debian's python3 before any venv exists.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / os.environ.get("BUILD_DIR", "build") / "matrix"
LOCK = REPO / "requirements" / "pypi-stack.txt"
SKIP_EXIT = 77
PYENV_MINORS = ("3.10", "3.11", "3.12", "3.13")
LOOPS = ("asyncio", "uvloop")
SERVERS = ("uvicorn-httptools", "uvicorn-h11", "gunicorn-uvicorn", "hypercorn", "aiohttp")
SUITES = {
    "python": ["tests/python"],
    "servers": ["tests/e2e/test_servers.py"],
    "e2e": ["tests/e2e"],
    "wheel": ["tests/wheel"],
}


@dataclass(frozen=True)
class Env:
    name: str
    kind: str  # debian | debian-pypi | pyenv
    minor: str
    python: Path | None  # the base interpreter; None when missing
    venv: Path
    missing: str | None = None  # why the interpreter is not here

    @property
    def venv_python(self) -> Path:
        return self.venv / "bin" / "python"


def _pyenv_python(minor: str) -> tuple[Path | None, str | None]:
    pyenv = shutil.which("pyenv") or str(Path.home() / ".pyenv" / "bin" / "pyenv")
    if not os.access(pyenv, os.X_OK):
        return None, "pyenv is not on this machine"
    result = subprocess.run([pyenv, "prefix", minor], capture_output=True, text=True)
    prefix = Path(result.stdout.strip().splitlines()[0]) if result.returncode == 0 and result.stdout.strip() else None
    python = prefix / "bin" / f"python{minor}" if prefix else None
    if python is None or not os.access(python, os.X_OK):
        return None, f"pyenv has no CPython {minor} here"
    return python, None


def interpreters() -> list[Env]:
    venvs = REPO / ".venvs"
    debian = Path("/usr/bin/python3")
    debian_missing = None if os.access(debian, os.X_OK) else "no /usr/bin/python3"
    default_venv = Path(os.environ.get("VENV", ".venv"))
    envs = [
        Env("debian-3.11", "debian", "3.11", debian if not debian_missing else None,
            default_venv if default_venv.is_absolute() else REPO / default_venv, debian_missing),
        Env("debian-3.11-pypi", "debian-pypi", "3.11", debian if not debian_missing else None,
            venvs / "debian-3.11-pypi", debian_missing),
    ]
    for minor in PYENV_MINORS:
        python, why = _pyenv_python(minor)
        envs.append(Env(f"cpython-{minor}", "pyenv", minor, python, venvs / f"cpython-{minor}", why))
    return envs


def find(name: str) -> Env:
    for env in interpreters():
        if env.name == name:
            return env
    sys.exit(f"matrix.py: no environment {name!r}; known: {', '.join(e.name for e in interpreters())}")


def _run(argv: list[str | Path], **kwargs) -> None:
    print("+", " ".join(map(str, argv)), flush=True)
    subprocess.run([str(a) for a in argv], check=True, **kwargs)


def _stamp(env: Env) -> str:
    """What the venv was made from: the lock and the base interpreter (the shim is reinstalled anyway)."""
    digest = hashlib.sha256(LOCK.read_bytes() + str(env.python).encode())
    return digest.hexdigest()


def setup(env: Env) -> int:
    if env.missing:
        print(f"SKIP {env.name}: {env.missing}")
        return SKIP_EXIT
    if env.kind == "debian":
        if not env.venv_python.exists():
            print(f"{env.name}: {env.venv} is missing: scripts/build.sh makes it", file=sys.stderr)
            return 1
        return 0
    stamp_file = env.venv / ".loopwatch-stack"
    pip = [env.venv_python, "-m", "pip", "--disable-pip-version-check", "-q"]
    if not (stamp_file.exists() and stamp_file.read_text() == _stamp(env) and env.venv_python.exists()):
        shutil.rmtree(env.venv, ignore_errors=True)
        _run([env.python, "-m", "venv", env.venv])
        # Binary packages only: nothing in the stack may need a compiler on the target.
        _run(pip + ["install", "--only-binary", ":all:", "-r", LOCK])
        stamp_file.write_text(_stamp(env))
    # Ordinary build isolation: pip fetches setuptools from PyPI into a throwaway build env.
    _run(pip + ["install", "--force-reinstall", "--no-deps", REPO / "shim"])
    _run([env.venv_python, "-c", "import loopwatch._shim"])
    return 0


def run(env: Env, suite: str, extra: list[str]) -> int:
    out = RESULTS / env.name
    out.mkdir(parents=True, exist_ok=True)
    record = out / f"{suite}.json"
    if env.missing:
        record.write_text(json.dumps({"skip": env.missing}))
        print(f"SKIP {env.name} {suite}: {env.missing}")
        return SKIP_EXIT
    if not env.venv_python.exists():
        record.write_text(json.dumps({"fail": f"no venv {env.venv} (matrix.py setup {env.name})"}))
        print(f"{env.name}: no venv at {env.venv}; run: python3 scripts/matrix.py setup {env.name}", file=sys.stderr)
        return 1
    xml = out / f"{suite}.xml"
    xml.unlink(missing_ok=True)
    environ = dict(os.environ, VENV=str(env.venv), LOOPWATCH_MATRIX_ENV=env.name, LOOPWATCH_EXPECT_PYTHON=env.minor,
                   LOOPWATCH_WHEEL_DIR=str(out / "wheels"))
    argv = [env.venv_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", f"--junitxml={xml}",
            *SUITES[suite], *extra]
    print("+", " ".join(map(str, argv)), flush=True)
    rc = subprocess.run([str(a) for a in argv], cwd=REPO, env=environ).returncode
    record.write_text(json.dumps({"exit": rc}))
    return rc


def newest() -> str:
    present = [e for e in interpreters() if e.kind == "pyenv" and not e.missing]
    return present[-1].name if present else "debian-3.11-pypi"


# --- the table -------------------------------------------------------------------------------

@dataclass
class Tally:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    reason: str = ""

    def add(self, case: ET.Element) -> None:
        if case.find("failure") is not None or case.find("error") is not None:
            self.failed += 1
        elif (skip := case.find("skipped")) is not None:
            self.skipped += 1
            self.reason = self.reason or (skip.get("message") or "").removeprefix("Skipped: ")
        else:
            self.passed += 1

    def cell(self) -> str:
        if self.failed:
            return f"FAIL ({self.failed} failed)"
        if self.passed:
            return f"PASS ({self.passed})" if not self.skipped else f"PASS ({self.passed}, {self.skipped} skip)"
        if self.skipped:
            return f"SKIP: {self.reason}"
        return ""


def _params(case: ET.Element) -> list[str]:
    name = case.get("name", "")
    return name[name.index("[") + 1:-1].split("-") if "[" in name else []


def _cases(env: Env, suite: str) -> list[ET.Element] | None:
    xml = RESULTS / env.name / f"{suite}.xml"
    if not xml.exists():
        return None
    return list(ET.parse(xml).getroot().iter("testcase"))


def _recorded(env: Env, suite: str) -> dict:
    path = RESULTS / env.name / f"{suite}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _suite_cell(env: Env, suite: str, loop: str | None, match=lambda case: True) -> str:
    recorded = _recorded(env, suite)
    if "skip" in recorded:
        return f"SKIP: {recorded['skip']}"
    if "fail" in recorded:
        return f"FAIL: {recorded['fail']}"
    cases = _cases(env, suite)
    if cases is None:
        return "-" if not recorded else f"FAIL (exit {recorded.get('exit')}, no results)"
    tally = Tally()
    for case in cases:
        params = _params(case)
        case_loop = next((p for p in params if p in LOOPS), None)
        if match(case) and (loop is None or case_loop in (None, loop)):
            tally.add(case)
    if not tally.cell() and recorded.get("exit"):
        return f"FAIL (exit {recorded['exit']})"
    return tally.cell() or "-"


def _server_cell(env: Env, server: str, loop: str) -> str:
    def is_server(case: ET.Element) -> bool:
        return "test_servers" in case.get("classname", "") and server in case.get("name", "")

    for suite in ("servers", "e2e"):  # the e2e suite runs test_servers.py too
        cell = _suite_cell(env, suite, loop, is_server)
        if cell not in ("-", ""):
            return cell
    return "-"


def print_table() -> int:
    columns = ["python", "loop", "shim tests", *SERVERS, "e2e suite"]
    rows = []
    for env in interpreters():
        if env.missing:  # one row: every cell would say the same
            rows.append([env.name, "both", f"SKIP: {env.missing}", *([""] * (len(columns) - 3))])
            continue
        for loop in LOOPS:
            rows.append([env.name, loop, _suite_cell(env, "python", loop),
                         *(_server_cell(env, s, loop) for s in SERVERS), _suite_cell(env, "e2e", loop)])
    widths = [max(len(c), *(len(r[i]) for r in rows if not r[2].startswith("SKIP: ") or i != 2)) for i, c in enumerate(columns)]
    widths = [min(w, 36) for w in widths]

    def line(cells: list[str]) -> str:
        if cells[2].startswith("SKIP: ") and not any(cells[3:]):  # a missing interpreter: say it whole
            return "  ".join(c.ljust(w) for c, w in zip(cells[:2], widths)) + "  " + cells[2]
        return "  ".join((c if len(c) <= w else c[: w - 1] + "~").ljust(w) for c, w in zip(cells, widths)).rstrip()

    print("Runtime matrix (Python x loop x server; SKIP says why; '-' = not run in this configuration)")
    print(line(columns))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))
    print()
    print("Wheels (tests/wheel: python -m build, auditwheel, installed and run with no compiler)")
    for env in interpreters():
        print(f"  {env.name:<18} {_suite_cell(env, 'wheel', None)}{_wheel_tag(env)}")
    failed = any("FAIL" in cell for row in rows for cell in row)
    return 1 if failed else 0


def _wheel_tag(env: Env) -> str:
    wheels = sorted((RESULTS / env.name / "wheels").glob("*manylinux*.whl")) if (RESULTS / env.name / "wheels").is_dir() else []
    return f"  {wheels[-1].name}" if wheels else ""


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "setup":
        names = [e.name for e in interpreters()] if rest == ["all"] else rest
        codes = [setup(find(name)) for name in names]
        return 1 if 1 in codes or any(c not in (0, SKIP_EXIT) for c in codes) else (SKIP_EXIT if codes and all(c == SKIP_EXIT for c in codes) else 0)
    if command == "run" and len(rest) >= 2 and rest[1] in SUITES:
        name = newest() if rest[0] == "newest" else rest[0]
        return run(find(name), rest[1], rest[2:])
    if command == "newest":
        print(newest())
        return 0
    if command == "print":
        return print_table()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
