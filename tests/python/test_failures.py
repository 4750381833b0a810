"""The shim under bad conditions: a ring directory it cannot use (missing, not a directory, read-only,
no permission, no space from the start or after the first ring), a full ring with no agent, and fork.
In each the application runs as before (same results as a stock run); the shim reports one warning
line and the reason in loopwatch.status(), counts, or re-creates. Read-only and no-space cases mount a
tmpfs in a private mount namespace (unshare), since chmod does not stop root, which CI runs as."""
from __future__ import annotations

import functools
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import LOOP_KINDS, run_python

NEW_LOOP = {
    "asyncio": "import asyncio; new_loop = asyncio.SelectorEventLoop",
    "uvloop": "import asyncio, uvloop; new_loop = uvloop.new_event_loop",
}


# The application for the ring directory cases: two loops (so a second failure adds no warning) with
# ready callbacks, a timer and a task. It prints its results, loopwatch.status() and what the ring
# directory holds (from inside the process: a private mount is gone once it exits).
APP = """
import json, os, loopwatch
results = []
loops = []  # kept alive: a collected loop closes (and removes) its ring
async def work(x):
    await asyncio.sleep(0)
    return x * 2
for n in range(2):
    loop = new_loop()
    loops.append(loop)
    loop.call_soon(results.append, n)
    loop.call_soon(loop.call_later, 0.001, results.append, n + 10)
    results.append(loop.run_until_complete(work(n + 100)))
    loop.run_until_complete(asyncio.sleep(0.01))
ring_dir = os.environ.get("LOOPWATCH_DIR", "")
listing = {name: os.stat(os.path.join(ring_dir, name)).st_size for name in os.listdir(ring_dir)} if os.path.isdir(ring_dir) else None
# Sorted: whether a 1 ms timer runs before a task step depends on the machine's speed, stock too.
print(json.dumps({"results": sorted(results), "status": loopwatch.status(), "listing": listing}))
"""


@functools.cache
def stock_results(loop_kind: str) -> list:
    stock = run_python(NEW_LOOP[loop_kind] + APP)
    assert stock.returncode == 0, stock.stderr
    return json.loads(stock.stdout)["results"]


def run_app(loop_kind: str, ring_dir, prefix: list[str] | None = None, env: dict[str, str] | None = None):
    """Runs APP with the shim writing to ring_dir (under `prefix`, e.g. a private mount); it must exit
    0 with the results of a stock run. Returns its output and its loopwatch: lines."""
    result = run_python(NEW_LOOP[loop_kind] + APP, {"LOOPWATCH": "1", "LOOPWATCH_DIR": str(ring_dir), **(env or {})}, prefix=prefix)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["results"] == stock_results(loop_kind)
    assert out["status"]["installed"] and out["status"][loop_kind] == "instrumented"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("loopwatch:")]
    assert result.stderr.strip() == "\n".join(warnings)  # nothing but loopwatch's own line(s)
    return out, warnings


def loops_by_id(out: dict) -> list[dict]:
    return sorted(out["status"]["loops"], key=lambda loop: loop["loop_id"])


def assert_disabled_with_one_warning(out: dict, warnings: list[str], cause: str, path: str) -> None:
    """Recording off for both loops, one warning naming cause and path, each loop saying why."""
    assert out["status"]["recording"] is False
    assert cause in out["status"]["error"] and path in out["status"]["error"]
    assert [loop["state"] for loop in loops_by_id(out)] == ["failed", "failed"]
    assert all(cause in loop["error"] for loop in out["status"]["loops"])
    assert len(warnings) == 1 and "recording disabled" in warnings[0]
    assert cause in warnings[0] and path in warnings[0]


# (ring dir relative to tmp_path, what to put in tmp_path first, the error's strerror)
UNUSABLE = {
    "missing, parent missing too": ("missing/rings", None, "No such file or directory"),
    "under a regular file": ("a-file/rings", "a-file", "Not a directory"),
    "a regular file": ("a-file", "a-file", "Not a directory"),
}


@pytest.mark.parametrize("case", UNUSABLE)
@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_unusable_ring_dir_disables_recording_with_one_warning_and_the_app_runs(tmp_path, loop_kind, case):
    relative, blocker, cause = UNUSABLE[case]
    if blocker:
        (tmp_path / blocker).write_text("not a directory")
    out, warnings = run_app(loop_kind, tmp_path / relative)
    assert_disabled_with_one_warning(out, warnings, cause, str(tmp_path / relative.split("/")[0]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ([blocker] if blocker else [])  # nothing created


@pytest.fixture(scope="session")
def private_mount():
    """(prefix, base): a command prefix that runs a program in a mount namespace of its own, where
    tests may mount tmpfs below `base` (None: anywhere). `unshare -m` as root (CI runs as root, where
    chmod does not stop writes), else `unshare -rm` (a user namespace). In a chroot, "/" is no mount
    point, so unshare cannot make it private; /dev/shm is one: the fallback makes that private in the
    new namespace (nothing propagates back) and mounts below it. Skips where none is allowed (e.g. a
    container without CAP_SYS_ADMIN)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    shm_prefix = ["unshare", "-m", "--propagation", "unchanged", "sh", "-ec", 'mount --make-rprivate /dev/shm\nexec "$@"', "sh"]
    candidates = [(["unshare", "-m"], None), (["unshare", "-rm"], None)]
    if os.path.ismount("/dev/shm"):
        candidates.append((shm_prefix, "/dev/shm"))
    errors = []
    for prefix, base in candidates:
        with tempfile.TemporaryDirectory(dir=base) as mount_point:
            probe = subprocess.run([*prefix, "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mount_point], capture_output=True)
            if probe.returncode == 0:
                return prefix, base
            errors.append(probe.stderr.decode().strip())
    pytest.skip(f"cannot mount in a private namespace here: {errors}")


@pytest.fixture
def mount_point(private_mount, tmp_path):
    """An empty directory the test may mount a tmpfs on (through private_mount's prefix)."""
    base = private_mount[1]
    path = pathlib.Path(tempfile.mkdtemp(dir=base)) if base else tmp_path / "mnt"
    path.mkdir(exist_ok=True)
    yield path
    if base:
        shutil.rmtree(path, ignore_errors=True)


def in_tmpfs(prefix: list[str], mount_point, options: str, then: str = "") -> list[str]:
    """prefix + a shell that mounts a tmpfs (private to that process) at mount_point, runs the shell
    commands `then`, and execs the program."""
    return [*prefix, "sh", "-ec", f'mount -t tmpfs -o {options} loopwatch-test "{mount_point}"\n{then}\nexec "$@"', "sh"]


@pytest.mark.parametrize("exists", [True, False], ids=["dir exists", "dir missing"])
@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_read_only_ring_dir_disables_recording_with_one_warning_and_the_app_runs(private_mount, mount_point, loop_kind, exists):
    ring_dir = mount_point / "rings"
    make_dir = f'mkdir "{ring_dir}"\n' if exists else ""
    # remount,bind,ro sets the mount's own read-only flag: allowed in a user namespace too.
    prefix = in_tmpfs(private_mount[0], mount_point, "size=1m", then=f'{make_dir}mount -o remount,bind,ro "{mount_point}"')
    out, warnings = run_app(loop_kind, ring_dir, prefix)
    assert_disabled_with_one_warning(out, warnings, "Read-only file system", str(ring_dir))
    assert out["listing"] == ({} if exists else None)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv(1) is not installed")
@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_ring_dir_without_write_permission_disables_recording_with_one_warning(loop_kind):
    """chmod 0500: what a non-root user meets. As root (CI), the app runs as nobody to feel it."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="loopwatch-perm-"))  # pytest's tmp dirs are 0700: nobody cannot reach them
    try:
        base.chmod(0o755)
        ring_dir = base / "rings"
        ring_dir.mkdir()
        prefix = None
        if os.geteuid() == 0:
            os.chown(ring_dir, 65534, 65534)
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            probe = subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True, text=True)
            if probe.returncode != 0:  # e.g. a chroot whose root directory is 0700
                pytest.skip(f"user nobody cannot run {sys.executable} here: {probe.stderr.strip()}")
        ring_dir.chmod(0o500)
        out, warnings = run_app(loop_kind, ring_dir, prefix)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert_disabled_with_one_warning(out, warnings, "Permission denied", str(ring_dir))
    assert out["listing"] == {}


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_ring_dir_with_no_space_disables_recording_and_leaves_no_partial_file(private_mount, mount_point, loop_kind):
    # 1 MiB of tmpfs; a default ring is several MiB: posix_fallocate fails before anything is mapped.
    out, warnings = run_app(loop_kind, mount_point / "rings", in_tmpfs(private_mount[0], mount_point, "size=1m"))
    assert_disabled_with_one_warning(out, warnings, "No space left on device", str(mount_point / "rings"))
    assert out["listing"] == {}  # the dot-file the ring was being built in is gone


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_ring_dir_that_fills_up_keeps_the_first_ring_and_disables_the_next(private_mount, mount_point, loop_kind):
    # Small rings (~280 KiB each) in 400 KiB: the first loop's ring fits, the second's does not.
    prefix = in_tmpfs(private_mount[0], mount_point, "size=400k")
    out, warnings = run_app(loop_kind, mount_point, prefix, {"LOOPWATCH_RING_CAPACITY": "64"})
    (name, size), = out["listing"].items()  # one ring, and no dot-file left by the second
    assert name.endswith("-1.ring") and 400 * 1024 < 2 * size  # the setup is what the test says
    loops = loops_by_id(out)
    assert [loop["state"] for loop in loops] == ["recording", "failed"]
    assert loops[0]["samples_written"] > 0
    assert "No space left on device" in loops[1]["error"] == out["status"]["error"]
    assert out["status"]["recording"] is True
    assert len(warnings) == 1 and "No space left on device" in warnings[0] and "loop 2" in warnings[0]


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_full_ring_counts_every_lost_sample_and_never_blocks(tmp_path, loop_kind):
    code = NEW_LOOP[loop_kind] + """
import json, loopwatch
from loopwatch import _shim
loop = new_loop()
ran = []
for i in range(1000):
    loop.call_soon(ran.append, i)
loop.call_soon(loop.stop)
loop.run_forever()  # exactly 1001 callbacks, nothing else
st = _shim.loop_status(loop)
header = _shim.read_ring(st["file"])["header"]
print(json.dumps({"ran": len(ran), "written": st["samples_written"], "dropped": st["dropped"],
                  "write_pos": header["write_pos"], "header_dropped": header["dropped"]}))
"""
    result = run_python(code, {"LOOPWATCH": "1", "LOOPWATCH_DIR": str(tmp_path), "LOOPWATCH_RING_CAPACITY": "64"})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["ran"] == 1000
    assert out["written"] == out["write_pos"] == 64
    assert out["dropped"] == out["header_dropped"] == 1001 - 64


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_fork_child_writes_its_own_ring_and_leaves_the_parents_alone(tmp_path, loop_kind):
    code = NEW_LOOP[loop_kind] + """
import json, os, loopwatch
from loopwatch import _shim
def tick(): pass
loop = new_loop()
loop.call_soon(tick)
loop.run_until_complete(asyncio.sleep(0.01))
parent_file = _shim.loop_status(loop)["file"]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    child_loop = new_loop()
    child_loop.call_soon(tick)
    child_loop.run_until_complete(asyncio.sleep(0.01))
    st = _shim.loop_status(child_loop)
    header = _shim.read_ring(st["file"])["header"]
    os.write(w, json.dumps({"file": st["file"], "pid": header["pid"], "written": st["samples_written"],
                            "parent_state": _shim.loop_status(loop)["state"]}).encode())
    os._exit(0)
os.close(w)
child = json.loads(os.read(r, 65536))
os.waitpid(pid, 0)
before = _shim.read_ring(parent_file)["header"]["write_pos"]
loop.call_soon(tick)
loop.run_until_complete(asyncio.sleep(0.01))
after = _shim.read_ring(parent_file)["header"]
print(json.dumps({"child": child, "child_pid": pid, "parent_file": parent_file, "parent_pid": after["pid"],
                  "parent_grew": after["write_pos"] > before, "me": os.getpid()}))
"""
    result = run_python(code, {"LOOPWATCH": "1", "LOOPWATCH_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["child"]["pid"] == out["child_pid"] != out["me"]
    assert out["child"]["file"] != out["parent_file"]
    assert out["child"]["written"] >= 2
    assert out["child"]["parent_state"] == "idle"  # the parent's ring is not the child's to write
    assert out["parent_pid"] == out["me"] and out["parent_grew"]
