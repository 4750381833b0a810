"""The Dockerfiles in docker/: lint-clean, apt package names that exist in Debian 12, the agent's
runtime libraries all installed, a fixed non-root uid, a venv that survives the copy between stages,
a HEALTHCHECK that works. No Docker engine is needed (or available)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import pytest

from deploy_files import (
    DOCKER_DIR,
    DOCKERFILELINT,
    REPO,
    apt_install_packages,
    dockerfiles,
    exec_form,
    healthcheck_command,
    listen_port,
    numeric_user,
    parse_dockerfile,
    require_tool,
)

AGENT_DOCKERFILE = DOCKER_DIR / "agent.Dockerfile"
DEMO_DOCKERFILE = DOCKER_DIR / "demo.Dockerfile"
AGENT_BINARY = REPO / "build" / "agent" / "loopwatch-agent"

# Packages debian:12-slim already has (Priority required, or pulled in by apt): a library of these
# needs no apt-get line in a runtime stage. Checked against a debootstrap --variant=minbase bookworm.
IN_DEBIAN_SLIM = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}


def test_dockerfiles_exist():
    names = [p.name for p in dockerfiles()]
    assert "agent.Dockerfile" in names and "demo.Dockerfile" in names, names


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: p.name)
def test_dockerfilelint_reports_nothing(dockerfile: Path):
    if not os.access(DOCKERFILELINT, os.X_OK):
        pytest.fail(f"{DOCKERFILELINT.relative_to(REPO)} is missing: run bash scripts/install-node-tools.sh", pytrace=False)
    # An absolute path of an existing file: dockerfilelint lints any other argument as Dockerfile text.
    result = subprocess.run([str(DOCKERFILELINT), "-o", "json", str(dockerfile.resolve())],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"dockerfilelint exited {result.returncode} without a JSON report:\n{result.stdout}\n{result.stderr}")
    issues = [f"line {i['line']}: {i['category']}: {i['title']}: {i['content']}"
              for f in report["files"] for i in f["issues"]]
    assert not issues and result.returncode == 0, f"dockerfilelint on {dockerfile.name}:\n" + "\n".join(issues)


def _apt_packages() -> list[tuple[str, str]]:
    found = []
    for dockerfile in dockerfiles():
        for stage in parse_dockerfile(dockerfile):
            for run in stage.all("RUN"):
                found += [(dockerfile.name, name) for name in apt_install_packages(run.args)]
    return sorted(set(found))


def test_apt_install_lines_are_found():
    # The parser must see the packages at all, or the existence check below would pass vacuously.
    names = {name for _, name in _apt_packages()}
    assert {"cmake", "prometheus-cpp-dev", "libprometheus-cpp-pull1.0", "python3-uvicorn"} <= names, names


@lru_cache(maxsize=None)
def _debian_packages(names: tuple[str, ...]) -> frozenset[str]:
    """The names among `names` that Debian 12's apt cache has as real packages (one apt-cache call:
    it takes about a second however many names it is given)."""
    require_tool("apt-cache", "these tests run on Debian 12")
    result = subprocess.run(["apt-cache", "show", "--no-all-versions", *names], capture_output=True, text=True, timeout=120)
    return frozenset(re.findall(r"^Package: (\S+)$", result.stdout, re.M))


@pytest.mark.parametrize("dockerfile,package", _apt_packages())
def test_apt_package_exists_in_debian12(dockerfile: str, package: str):
    known = _debian_packages(tuple(sorted({name for _, name in _apt_packages()} | {"bash"})))
    if package not in known:
        hint = "" if "bash" in known else " (apt has no package lists here: run apt-get update)"
        pytest.fail(f"{dockerfile}: apt-get installs {package!r}, which is not a package of Debian 12's archive{hint}",
                    pytrace=False)


@lru_cache(maxsize=None)
def _stages(path: Path):
    return parse_dockerfile(path)


def _runtime(path: Path):
    return _stages(path)[-1]


@pytest.mark.parametrize("dockerfile", [AGENT_DOCKERFILE, DEMO_DOCKERFILE], ids=lambda p: p.name)
def test_multi_stage_debian12(dockerfile: Path):
    stages = _stages(dockerfile)
    assert len(stages) >= 2, "builder and runtime stages"
    assert stages[0].base == "debian:12" and stages[0].name, "the builder: a named debian:12 stage"
    assert stages[-1].base == "debian:12-slim", "the runtime: debian:12-slim"
    copies = " ".join(i.args for i in stages[-1].all("COPY"))
    assert f"--from={stages[0].name}" in copies, "the runtime copies its artifact from the builder"
    runtime_apt = [p for run in stages[-1].all("RUN") for p in apt_install_packages(run.args)]
    build_tools = {"g++", "gcc", "make", "cmake", "build-essential", "python3-dev", "python3-pip", "python3-venv"}
    assert not build_tools & set(runtime_apt), f"build tools in the runtime stage: {build_tools & set(runtime_apt)}"


def test_same_fixed_non_root_uid_in_both_images():
    users = {}
    for dockerfile in (AGENT_DOCKERFILE, DEMO_DOCKERFILE):
        user = _runtime(dockerfile).last("USER")
        assert user is not None, f"{dockerfile.name}: the runtime stage must set USER"
        users[dockerfile.name] = numeric_user(user.args)
    (uid, gid), other = users[AGENT_DOCKERFILE.name], users[DEMO_DOCKERFILE.name]
    assert uid != 0, "not root"
    assert (uid, gid) == other, f"the agent reads only rings owned by its own uid: {users}"
    for dockerfile in (AGENT_DOCKERFILE, DEMO_DOCKERFILE):
        runs = " ".join(r.args for r in _runtime(dockerfile).all("RUN"))
        assert f"--uid {uid}" in runs and f"--gid {gid}" in runs, f"{dockerfile.name}: create the user with that uid/gid"


def test_agent_image_entrypoint_and_default_command():
    runtime = _runtime(AGENT_DOCKERFILE)
    assert exec_form(runtime.last("ENTRYPOINT").args) == ["loopwatch-agent"]
    cmd = exec_form(runtime.last("CMD").args)
    assert cmd is not None
    address = cmd[cmd.index("--web.listen-address") + 1]
    assert address.startswith("0.0.0.0:"), "listen on every interface of the container"
    assert cmd[cmd.index("--ring.dir") + 1] == "/run/loopwatch"
    exposed = {int(p.split("/")[0]) for e in runtime.all("EXPOSE") for p in e.args.split()}
    assert listen_port(cmd) == 9477 and 9477 in exposed, (cmd, exposed)


def test_agent_runtime_installs_every_linked_library():
    """The shared libraries the built agent needs (ldd) come from packages the runtime stage installs
    or debian:12-slim already has: a new dependency of the agent fails here, not in production."""
    if not os.access(AGENT_BINARY, os.X_OK):
        pytest.fail(f"{AGENT_BINARY.relative_to(REPO)} is missing: run bash scripts/build.sh first", pytrace=False)
    ldd = subprocess.run(["ldd", str(AGENT_BINARY)], capture_output=True, text=True, timeout=30, check=True).stdout
    assert "not found" not in ldd, ldd
    libs = re.findall(r"=>\s+(/\S+)", ldd)
    # dpkg knows each file under the path its package ships, /lib/... or /usr/lib/... (Debian 12's
    # merged /usr makes both work), and maybe only its real name behind the soname symlink.
    def candidates(lib: str) -> set[str]:
        paths = {lib, os.path.realpath(lib)}
        return paths | {p[len("/usr"):] if p.startswith("/usr/") else "/usr" + p for p in paths}

    all_candidates = sorted(set().union(*(candidates(lib) for lib in libs)))
    owners = subprocess.run(["dpkg", "-S", *all_candidates], capture_output=True, text=True, timeout=60)
    owner_of = dict(reversed(line.split(": ", 1)) for line in owners.stdout.splitlines() if ": " in line)
    owned = {lib: next((owner_of[c] for c in sorted(candidates(lib)) if c in owner_of), None) for lib in libs}
    unowned = [lib for lib, owner in owned.items() if owner is None]
    assert not unowned, f"no Debian package owns {unowned}: {owners.stderr}"
    packages = {owner.split(":", 1)[0] for owner in owned.values()}
    installed = {p for run in _runtime(AGENT_DOCKERFILE).all("RUN") for p in apt_install_packages(run.args)}
    missing = packages - installed - IN_DEBIAN_SLIM
    assert not missing, f"agent.Dockerfile's runtime stage must apt-get install {sorted(missing)} (ldd of the agent)"
    unused = installed - packages
    assert not unused, f"the runtime stage installs {sorted(unused)}, which the agent does not link"


def test_demo_venv_is_copied_to_the_same_path():
    stages = _stages(DEMO_DOCKERFILE)
    builder, runtime = stages[0], stages[-1]
    runs = " ".join(r.args for r in builder.all("RUN"))
    match = re.search(r"/usr/bin/python3 -m venv --system-site-packages (\S+)", runs)
    assert match, "the builder creates the venv with Debian's /usr/bin/python3 and --system-site-packages"
    venv = match.group(1)
    assert re.search(rf"{re.escape(venv)}/bin/python -m pip install .*--no-build-isolation.*--no-index.* \./shim", runs), runs
    copies = [c.args.split() for c in runtime.all("COPY") if c.args.startswith(f"--from={builder.name}")]
    assert [f"--from={builder.name}", venv, venv] in copies, f"COPY --from={builder.name} {venv} {venv}: {copies}"
    env = " ".join(e.args for e in runtime.all("ENV"))
    assert f"PATH={venv}/bin:" in env, "the venv's python first on PATH"
    for setting in ("LOOPWATCH=1", "LOOPWATCH_DIR=/run/loopwatch", "LOOPWATCH_SERVICE=demo"):
        assert setting in env.split(), setting
    runtime_apt = {p for run in runtime.all("RUN") for p in apt_install_packages(run.args)}
    assert {"python3", "python3-uvicorn", "python3-uvloop", "python3-fastapi", "python3-httptools"} <= runtime_apt
    cmd = exec_form(runtime.last("CMD").args)
    assert cmd[:4] == ["python", "-m", "uvicorn", "examples.demo_app:app"], cmd
    assert cmd[cmd.index("--workers") + 1] == "4" and cmd[cmd.index("--loop") + 1] == "uvloop", cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_agent_healthcheck_works_against_a_real_agent():
    """The agent image's HEALTHCHECK command, run here against the locally built agent (its port
    swapped for a free one), passes; against a port nobody listens on it fails."""
    if not os.access(AGENT_BINARY, os.X_OK):
        pytest.fail(f"{AGENT_BINARY.relative_to(REPO)} is missing: run bash scripts/build.sh first", pytrace=False)
    runtime = _runtime(AGENT_DOCKERFILE)
    check = healthcheck_command(runtime)
    assert check, "the agent image has an exec-form HEALTHCHECK"
    text = " ".join(check)
    assert "/metrics" not in text, ("probe /api/status, not /metrics: every GET /metrics counts as the scrape "
                                    "after which the agent removes a dead worker's ring")
    image_port = listen_port(exec_form(runtime.last("CMD").args))
    assert f"/{image_port}" in text, f"the check targets the image's port {image_port}: {check}"
    port = _free_port()
    with tempfile.TemporaryDirectory() as ring_dir:
        agent = subprocess.Popen([str(AGENT_BINARY), "--web.listen-address", f"127.0.0.1:{port}", "--ring.dir", ring_dir],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    assert agent.poll() is None, agent.stderr.read().decode()
                    assert time.monotonic() < deadline, "the agent did not listen within 10 s"
                    time.sleep(0.05)
            swapped = [a.replace(f"/{image_port}", f"/{port}") for a in check]
            ok = subprocess.run(swapped, capture_output=True, text=True, timeout=10)
            assert ok.returncode == 0, f"HEALTHCHECK failed against a healthy agent: {ok.stderr}"
            dead = [a.replace(f"/{image_port}", f"/{_free_port()}") for a in check]
            assert subprocess.run(dead, capture_output=True, timeout=10).returncode != 0, "the check can fail"
        finally:
            agent.kill()  # not terminate(): after serving a request, its clean exit takes ~2 s
            agent.wait(timeout=10)
