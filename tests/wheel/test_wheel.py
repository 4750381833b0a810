"""The wheel users install: built with `python -m build --wheel` for the interpreter running these
tests, judged by auditwheel, tagged by `auditwheel repair`, and installed and run on a system where
nothing can be compiled. Runs in a PyPI venv of the runtime matrix (scripts/matrix.py), which has
build and auditwheel; the wheels are kept in $LOOPWATCH_WHEEL_DIR.

What it shows:
  - one wheel, for this interpreter's ABI (cp3XX);
  - auditwheel: consistent with manylinux_2_24_x86_64 (glibc 2.24+, the libstdc++ of GCC 6+), and
    the extension's versioned symbols are no newer than that (shim/src/portable_symbols.h);
  - the repaired wheel installs with `pip --no-index` (nothing is downloaded) into a fresh venv in a
    mount namespace where /usr/include, GCC's libraries and the interpreter's headers are empty (a
    compile fails there: checked), and with LOOPWATCH=1 the shim records asyncio samples.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

import pytest

from conftest import POLICY, REPO, _tool
MAX_VERSIONS = {"GLIBC": (2, 17), "GLIBCXX": (3, 4, 22), "CXXABI": (1, 3, 9), "GCC": (3, 0)}
ALLOWED_LIBS = {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2", "libpthread.so.0", "libdl.so.2"}


def test_one_wheel_for_this_interpreter(built):
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert re.fullmatch(rf"loopwatch-[0-9.]+-{tag}-{tag}-linux_x86_64\.whl", built.name), built.name


def test_auditwheel_says_manylinux_2_24(built):
    result = subprocess.run([_tool("auditwheel"), "show", str(built)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert f'consistent with the following platform tag: "{POLICY}"' in text, result.stdout


def _versions(path: Path) -> tuple[set[str], dict[str, set[str]]]:
    """(libraries needed, {library: versions required}) of an ELF file, read with pyelftools."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        elf = ELFFile(f)
        needed = {tag.needed for tag in elf.get_section_by_name(".dynamic").iter_tags() if tag.entry.d_tag == "DT_NEEDED"}
        required: dict[str, set[str]] = {}
        for verneed, auxes in elf.get_section_by_name(".gnu.version_r").iter_versions():
            required[verneed.name] = {aux.name for aux in auxes}
    return needed, required


def test_the_extension_needs_only_old_symbol_versions(built, tmp_path):
    with zipfile.ZipFile(built) as z:
        (so,) = [n for n in z.namelist() if n.startswith("loopwatch/_shim") and n.endswith(".so")]
        z.extract(so, tmp_path)
    needed, required = _versions(tmp_path / so)
    assert needed <= ALLOWED_LIBS, needed - ALLOWED_LIBS
    too_new = []
    for versions in required.values():
        for version in versions:
            family, _, number = version.partition("_")
            limit = MAX_VERSIONS.get(family)
            if limit is not None and tuple(int(p) for p in number.split(".")) > limit:
                too_new.append(version)
    assert not too_new, f"symbol versions newer than {POLICY} allows: {sorted(too_new)} (see shim/src/portable_symbols.h)"


SMOKE = r"""
import asyncio, json, loopwatch
from loopwatch import _shim
async def main():
    await asyncio.sleep(0.01)
loop = asyncio.new_event_loop()
loop.run_until_complete(main())
ring = _shim.read_ring(_shim.loop_status(loop)["file"])
print(json.dumps({"asyncio": loopwatch.status()["asyncio"], "samples": len(ring["samples"]), "shim": _shim.__file__}))
"""


COMPILERS = ("cc", "c++", "gcc", "g++", "clang", "clang++", f"x86_64-linux-gnu-gcc-12", "x86_64-linux-gnu-g++-12")


def _private_mount_namespace() -> list[str] | None:
    """A prefix that runs a command in a mount namespace of its own, or None where there is none: not
    root, no unshare, or a chroot (its "/" is no mount point, so it cannot be made private, and a
    mount in a namespace still shared with the host would show on the host)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None
    prefix = ["unshare", "--mount", "--propagation", "private"]
    return prefix if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0 else None


def test_the_wheel_installs_and_records_where_nothing_can_be_compiled(repaired, tmp_path):
    """In a private mount namespace /usr/include, GCC's files and the interpreter's headers are
    empty. Where there is none (a chroot: the fresh-Debian check), every compiler on PATH is one
    that fails, and CC/CXX too: weaker (the headers stay), said in the output."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    venv = tmp_path / "venv"
    namespace = _private_mount_namespace()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPWATCH", "PYTHON", "VIRTUAL_ENV"))}
    env.update(SMOKE=SMOKE, CC="false", CXX="false")
    lines = ["set -eu"]
    if namespace is not None:
        hidden: list[str] = []
        for d in sorted({"/usr/include", "/usr/lib/gcc", "/usr/local/include", sysconfig.get_paths()["include"]}):
            if os.path.isdir(d) and not any(d.startswith(h + "/") for h in hidden):  # an empty parent hides it already
                hidden.append(d)
        lines += [f"mount -t tmpfs -o size=1m loopwatch-empty '{d}'" for d in hidden]
    else:
        print("no private mount namespace here: compilers are hidden from PATH, the headers stay")
        shims = tmp_path / "no-compilers"
        shims.mkdir()
        for name in COMPILERS:
            (shims / name).write_text("#!/bin/sh\necho \"loopwatch test: $0 was called\" >&2\nexit 1\n")
            (shims / name).chmod(0o755)
        env["PATH"] = f"{shims}:{env['PATH']}"
    lines += [
        # No compiler works here.
        "if printf '#include <stdio.h>\\nint main(void){return 0;}\\n' | gcc -x c -o /dev/null - 2>/dev/null; then"
        " echo 'a compile still works'; exit 3; fi",
        f"'{base}' -m venv '{venv}'",
        f"'{venv}/bin/python' -m pip install --disable-pip-version-check -q --no-index --no-deps --only-binary :all: '{repaired}'",
        f"LOOPWATCH=1 LOOPWATCH_DIR='{tmp_path}/rings' '{venv}/bin/python' -c \"$SMOKE\"",
    ]
    result = subprocess.run([*(namespace or []), "bash", "-c", "\n".join(lines)], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "was called" not in result.stderr, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["asyncio"] == "instrumented" and out["samples"] > 0, out
    assert out["shim"].startswith(str(venv)), out
