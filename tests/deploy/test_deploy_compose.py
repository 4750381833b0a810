"""docker/docker-compose.yml and docker/prometheus.yml: valid for docker-compose 1.29 (offline), and
wired so that the stack works: app and agent share a tmpfs ring directory as the same uid, Prometheus
scrapes the agent's port and loads dashboards/alerts.yml, Grafana gets the provisioning."""

from __future__ import annotations

import fnmatch
import re
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from deploy_files import (
    COMPOSE_FILE,
    DOCKER_DIR,
    REPO,
    compose,
    compose_command,
    compose_environment,
    compose_mounts,
    exec_form,
    flag_value,
    listen_port,
    numeric_user,
    parse_dockerfile,
    require_tool,
)


@lru_cache(maxsize=None)
def _config() -> dict:
    result = compose("config")
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


def _service(name: str) -> dict:
    services = _config()["services"]
    assert name in services, f"no service {name!r} in {sorted(services)}"
    return services[name]


def _dockerfile_of(service: dict) -> Path:
    build = service["build"]
    return Path(build["context"]) / build.get("dockerfile", "Dockerfile")


def _image_cmd(service: dict) -> list[str]:
    """The command a service runs: compose's `command:`, else the image's CMD."""
    command = compose_command(service)
    if command:
        return command
    return exec_form(parse_dockerfile(_dockerfile_of(service))[-1].last("CMD").args)


def _mount_at(service: dict, target: str):
    matches = [m for m in compose_mounts(service) if m.target.rstrip("/") == target.rstrip("/")]
    assert matches, f"nothing is mounted at {target} (mounts: {compose_mounts(service)})"
    return matches[0]


def test_compose_config_is_valid():
    result = compose("config", "-q")
    assert result.returncode == 0, f"docker-compose config -q rejects {COMPOSE_FILE.name}:\n{result.stderr}"


@pytest.mark.parametrize("breakage", [
    ("    restart: unless-stopped\n", "    restart: unless-stopped\n    volumez: []\n"),  # unknown key
    ("\"127.0.0.1:9477:9477\"", "\"127.0.0.1:9477:notaport\""),                        # bad port
    ("    driver: local\n", "    driver: local\n    bogus: 1\n"),                          # unknown volume key
], ids=["unknown-key", "bad-port", "bad-volume"])
def test_compose_config_rejects_a_broken_copy(tmp_path, breakage):
    """The check above can fail: a copy (relative paths resolved from docker/, as the original's)
    passes unchanged and fails once broken."""
    copy = tmp_path / "docker-compose.yml"
    original = COMPOSE_FILE.read_text()
    copy.write_text(original)
    assert compose("config", "-q", compose_file=copy, project_dir=DOCKER_DIR).returncode == 0
    old, new = breakage
    assert old in original, f"the breakage {old!r} no longer applies: update this test"
    copy.write_text(original.replace(old, new, 1))
    result = compose("config", "-q", compose_file=copy, project_dir=DOCKER_DIR)
    assert result.returncode != 0, f"docker-compose accepted a broken file ({new!r})"


def test_services_and_pinned_images():
    services = _config()["services"]
    assert {"app", "agent", "prometheus", "grafana"} <= set(services), sorted(services)
    assert _dockerfile_of(services["app"]) == DOCKER_DIR / "demo.Dockerfile"
    assert _dockerfile_of(services["agent"]) == DOCKER_DIR / "agent.Dockerfile"
    for name in ("app", "agent"):
        assert Path(services[name]["build"]["context"]) == REPO, "build context: the repository root"
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana-oss:")
    for name in ("prometheus", "grafana"):
        tag = services[name]["image"].rsplit(":", 1)[1]
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: pin an exact version, not {tag!r}"


def test_app_and_agent_share_a_tmpfs_ring_dir():
    app, agent = _service("app"), _service("agent")
    ring_dir = flag_value(_image_cmd(agent), "--ring.dir")
    assert ring_dir, "the agent's --ring.dir"
    env = compose_environment(app)
    assert env.get("LOOPWATCH_DIR") == ring_dir, f"app LOOPWATCH_DIR {env.get('LOOPWATCH_DIR')!r} != agent --ring.dir {ring_dir!r}"
    agent_mount, app_mount = _mount_at(agent, ring_dir), _mount_at(app, ring_dir)
    assert agent_mount.type == app_mount.type == "volume", "a named volume"
    assert agent_mount.source == app_mount.source, f"different volumes: {agent_mount.source} / {app_mount.source}"
    assert not agent_mount.read_only and not app_mount.read_only, "the agent writes its read position into the rings"
    volume = _config()["volumes"][agent_mount.source]
    opts = volume.get("driver_opts", {})
    assert volume.get("driver", "local") == "local" and opts.get("type") == "tmpfs", f"tmpfs-backed: {volume}"
    options = dict(o.split("=", 1) if "=" in o else (o, "") for o in opts.get("o", "").split(","))
    uid, gid = numeric_user(app["user"])
    assert options.get("uid") == str(uid) and options.get("gid") == str(gid), f"owned by the services' uid: {options}"
    assert "size" in options, "bound the tmpfs size"


def test_app_and_agent_run_as_the_same_uid():
    users = {}
    for name in ("app", "agent"):
        service = _service(name)
        image_user = parse_dockerfile(_dockerfile_of(service))[-1].last("USER")
        assert image_user is not None, f"{name}: USER in its Dockerfile"
        effective = service.get("user", image_user.args)
        assert numeric_user(effective) == numeric_user(image_user.args), f"{name}: compose user differs from the image's"
        users[name] = numeric_user(effective)
    assert users["app"] == users["agent"], f"rings are 0600 and the agent reads only its own uid's: {users}"
    assert users["app"][0] != 0


def test_app_runs_four_instrumented_workers():
    app = _service("app")
    command = _image_cmd(app)
    assert command[:4] == ["python", "-m", "uvicorn", "examples.demo_app:app"], command
    assert flag_value(command, "--workers") == "4", command
    assert compose_environment(app).get("LOOPWATCH") == "1"
    port = int(flag_value(command, "--port"))
    assert any(str(p).endswith(f":{port}:{port}/tcp") or str(p) == f"{port}:{port}" for p in app.get("ports", [])), app.get("ports")


def _prometheus_config_and_mounts():
    prometheus = _service("prometheus")
    config_mount = _mount_at(prometheus, "/etc/prometheus/prometheus.yml")
    assert Path(config_mount.source) == DOCKER_DIR / "prometheus.yml"
    return yaml.safe_load(Path(config_mount.source).read_text()), compose_mounts(prometheus)


def test_prometheus_scrapes_the_agent_port():
    config, _ = _prometheus_config_and_mounts()
    assert config["global"]["scrape_interval"] == "5s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "loopwatch" in jobs, "dashboards/alerts.yml expects job=\"loopwatch\""
    targets = [t for sc in jobs["loopwatch"]["static_configs"] for t in sc["targets"]]
    port = listen_port(_image_cmd(_service("agent")))
    assert targets == [f"agent:{port}"], f"{targets} != agent:<port of --web.listen-address> ({port})"
    assert any(str(p).endswith(f":{port}:{port}/tcp") for p in _service("agent").get("ports", []))


def test_prometheus_loads_the_rules_from_dashboards():
    config, mounts = _prometheus_config_and_mounts()
    rule_globs = config.get("rule_files", [])
    loaded = [m for m in mounts if any(fnmatch.fnmatch(m.target, g) for g in rule_globs)]
    assert [Path(m.source) for m in loaded] == [REPO / "dashboards" / "alerts.yml"], \
        f"rule_files {rule_globs} must match the mount of dashboards/alerts.yml: {mounts}"
    assert all(m.read_only for m in loaded)
    assert (REPO / "dashboards" / "alerts.yml").is_file()


def test_promtool_accepts_the_config_with_its_rules(tmp_path):
    """promtool checks prometheus.yml with rule_files pointed at the files compose mounts there."""
    promtool = require_tool("promtool", "install it: bash scripts/install-deps.sh (Debian package prometheus)")
    config, mounts = _prometheus_config_and_mounts()
    config["rule_files"] = [m.source for m in mounts if any(fnmatch.fnmatch(m.target, g) for g in config["rule_files"])]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config))
    result = subprocess.run([promtool, "check", "config", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rule files found" in result.stdout and "0 rule files found" not in result.stdout, result.stdout


def test_grafana_gets_provisioning_and_dashboards():
    grafana = _service("grafana")
    provisioning = _mount_at(grafana, "/etc/grafana/provisioning")
    dashboards = _mount_at(grafana, "/var/lib/grafana/dashboards/loopwatch")
    assert Path(provisioning.source) == REPO / "dashboards" / "provisioning" and provisioning.read_only
    assert Path(dashboards.source) == REPO / "dashboards" and dashboards.read_only
    for kind in ("datasources", "dashboards"):
        assert (REPO / "dashboards" / "provisioning" / kind / "loopwatch.yml").is_file(), kind
    assert list((REPO / "dashboards").glob("*.json")), "dashboards/*.json"
    # the contract between this stack and the provisioning files
    provider = yaml.safe_load((REPO / "dashboards/provisioning/dashboards/loopwatch.yml").read_text())
    paths = [p["options"]["path"] for p in provider["providers"]]
    assert dashboards.target in paths, f"the dashboard provider reads {paths}, the dashboards are at {dashboards.target}"
    datasources = yaml.safe_load((REPO / "dashboards/provisioning/datasources/loopwatch.yml").read_text())
    urls = [d["url"] for d in datasources["datasources"] if d["type"] == "prometheus"]
    assert "http://prometheus:9090" in urls, urls
    home = compose_environment(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert home.startswith(dashboards.target + "/")
        assert (REPO / "dashboards" / home[len(dashboards.target) + 1:]).is_file(), f"home dashboard {home}"
