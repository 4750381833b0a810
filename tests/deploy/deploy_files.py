"""Readers for the deployment files the tests in this directory check: Dockerfiles (stages,
instructions, `apt-get install` lines), `docker-compose config` output and Kubernetes manifests.
Nothing here runs Docker or talks to a cluster."""

from __future__ import annotations

import glob
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "docker"
COMPOSE_FILE = DOCKER_DIR / "docker-compose.yml"
K8S_DIR = REPO / "deploy" / "kubernetes"
DOCKERFILELINT = REPO / "tools" / "dockerfilelint" / "node_modules" / ".bin" / "dockerfilelint"


def dockerfiles() -> list[Path]:
    """Every docker/*Dockerfile (a new one is covered without touching the tests)."""
    return sorted(Path(p) for p in glob.glob(str(DOCKER_DIR / "*Dockerfile")))


def k8s_manifests() -> list[Path]:
    return sorted(Path(p) for p in glob.glob(str(K8S_DIR / "*.yaml")) + glob.glob(str(K8S_DIR / "*.yml")))


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: {hint}", pytrace=False)
    return path


# ---- Dockerfiles -----------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str  # continuation lines joined, comment lines inside them dropped
    line: int  # where the instruction starts (1-based)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, each with its instructions (no ARG expansion, no heredocs)."""
    stages: list[Stage] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments are dropped, inside continuations too, as Docker does
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        text = " ".join(part.strip() for part in pending if part.strip())
        pending = []
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            if keyword != "ARG":
                raise AssertionError(f"{path}:{start}: {keyword} before the first FROM")
        else:
            stages[-1].instructions.append(Instruction(keyword, args, start))
    assert not pending, f"{path}: ends inside a line continuation"
    return stages


def exec_form(args: str) -> list[str] | None:
    """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD, or None for shell form."""
    args = args.strip()
    if not args.startswith("["):
        return None
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def healthcheck_command(stage: Stage) -> list[str] | None:
    instruction = stage.last("HEALTHCHECK")
    if instruction is None:
        return None
    match = re.search(r"\bCMD\s+(.*)$", instruction.args)
    assert match, f"line {instruction.line}: HEALTHCHECK without CMD"
    return exec_form(match.group(1))


def apt_install_packages(run_args: str) -> list[str]:
    """Package names of every `apt-get install` (or `apt install`) in one RUN instruction."""
    packages: list[str] = []
    for segment in re.split(r"&&|\|\||;|\|", run_args):
        words = shlex.split(segment)
        for i, word in enumerate(words[:-1]):
            if word in ("apt-get", "apt") and "install" in words[i + 1 :]:
                after = words[words.index("install", i + 1) + 1 :]
                packages += [w.split("=", 1)[0] for w in after if not w.startswith("-")]
                break
    return packages


def numeric_user(user: str) -> tuple[int, int | None]:
    """(uid, gid) of a USER / compose `user:` value; fails unless both are numbers (a fixed uid)."""
    uid, _, gid = str(user).partition(":")
    assert uid.isdigit(), f"user {user!r}: use a numeric uid, so that other images can match it"
    assert not gid or gid.isdigit(), f"user {user!r}: use a numeric gid"
    return int(uid), int(gid) if gid else None


# ---- command lines ---------------------------------------------------------------------------------


def flag_value(args: list[str], flag: str) -> str | None:
    """The value of `--flag VALUE` or `--flag=VALUE` in an argument list (the last one wins)."""
    value = None
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1 :]
    return value


def listen_port(args: list[str]) -> int:
    address = flag_value(args, "--web.listen-address")
    assert address, f"no --web.listen-address in {args}"
    return int(address.rsplit(":", 1)[1])


# ---- docker-compose --------------------------------------------------------------------------------


def compose(*args: str, compose_file: Path = COMPOSE_FILE, project_dir: Path | None = None) -> subprocess.CompletedProcess:
    exe = require_tool("docker-compose", "install it: bash scripts/install-deps.sh (Debian package docker-compose)")
    cmd = [exe, "-f", str(compose_file)]
    if project_dir is not None:
        cmd += ["--project-directory", str(project_dir)]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60)


@dataclass
class Mount:
    source: str
    target: str
    read_only: bool
    type: str  # volume or bind


def compose_mounts(service: dict) -> list[Mount]:
    mounts = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):  # long syntax
            mounts.append(Mount(str(entry.get("source", "")), entry["target"], bool(entry.get("read_only")), entry.get("type", "volume")))
            continue
        parts = entry.split(":")
        if len(parts) == 1:  # anonymous volume
            mounts.append(Mount("", parts[0], False, "volume"))
            continue
        source, target = parts[0], parts[1]
        options = parts[2].split(",") if len(parts) > 2 else []
        kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
        mounts.append(Mount(source, target, "ro" in options, kind))
    return mounts


def compose_command(service: dict) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def compose_environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {}) or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


# ---- Kubernetes ------------------------------------------------------------------------------------


def load_k8s(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def all_k8s_documents(lenient: bool = False) -> list[tuple[Path, dict]]:
    """Every document of every manifest. lenient (for parametrizing at collection time): skip files
    that do not parse and documents that are not mappings, which the tests then report one by one."""
    found = []
    for path in k8s_manifests():
        try:
            docs = load_k8s(path)
        except yaml.YAMLError:
            if not lenient:
                raise
            continue
        found += [(path, doc) for doc in docs if isinstance(doc, dict) or not lenient]
    return found


def k8s_id(doc: dict) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job")


def pod_template(doc: dict) -> dict:
    return doc["spec"]["template"]


def pod_spec(doc: dict) -> dict:
    return pod_template(doc)["spec"]


def container_env(container: dict) -> dict[str, object]:
    """name -> value (a string) or valueFrom (a dict)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def container_args(container: dict) -> list[str]:
    return [str(a) for a in container.get("command", []) + container.get("args", [])]


def effective_uid(spec: dict, container: dict) -> int | None:
    own = (container.get("securityContext") or {}).get("runAsUser")
    return own if own is not None else (spec.get("securityContext") or {}).get("runAsUser")


def mount_at(container: dict, path: str) -> dict | None:
    for mount in container.get("volumeMounts", []):
        if mount["mountPath"].rstrip("/") == path.rstrip("/"):
            return mount
    return None


def volume(spec: dict, name: str) -> dict:
    for v in spec.get("volumes", []):
        if v["name"] == name:
            return v
    raise AssertionError(f"no volume {name!r} in the pod spec")


def selector_matches(match_labels: dict, labels: dict) -> bool:
    return bool(match_labels) and all(labels.get(k) == v for k, v in match_labels.items())


def container_port_names(spec: dict) -> set[str]:
    return {p["name"] for c in spec["containers"] for p in c.get("ports", []) if "name" in p}


def is_agent(container: dict) -> bool:
    return flag_value(container_args(container), "--ring.dir") is not None


def is_instrumented_app(container: dict) -> bool:
    return container_env(container).get("LOOPWATCH") == "1"
