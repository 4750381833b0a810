"""The shim under bad conditions: a ring directory it cannot use, a full ring with no agent, and
fork. In each the application runs as before; the shim reports, counts, or re-creates."""
from __future__ import annotations

import json

import pytest

from conftest import LOOP_KINDS, run_python

NEW_LOOP = {
    "asyncio": "import asyncio; new_loop = asyncio.SelectorEventLoop",
    "uvloop": "import asyncio, uvloop; new_loop = uvloop.new_event_loop",
}


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_unusable_ring_dir_disables_recording_with_one_warning_and_the_app_runs(tmp_path, loop_kind):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code = NEW_LOOP[loop_kind] + """
import json, loopwatch
results = []
for _ in range(2):  # two loops: still a single warning
    loop = new_loop()
    loop.call_soon(results.append, 1)
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
print(json.dumps({"results": results, "status": loopwatch.status()}))
"""
    result = run_python(code, {"LOOPWATCH": "1", "LOOPWATCH_DIR": str(blocker / "rings")})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["results"] == [1, 1]
    assert out["status"]["recording"] is False
    assert "Not a directory" in out["status"]["error"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("loopwatch:")]
    assert len(warnings) == 1 and "recording disabled" in warnings[0]


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
