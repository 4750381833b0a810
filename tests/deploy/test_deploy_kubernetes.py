"""deploy/kubernetes/: structural checks (no cluster, no kubectl here). The sidecar pod shares an
in-memory emptyDir between app and agent as one uid; the PodMonitors and the Service select real
pods and ports; the DaemonSet and its app share the hostPath, with a uid policy and pod-unique
service names."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy_files import (
    DOCKER_DIR,
    K8S_DIR,
    WORKLOAD_KINDS,
    all_k8s_documents,
    container_args,
    container_env,
    container_port_names,
    effective_uid,
    flag_value,
    is_agent,
    is_instrumented_app,
    k8s_id,
    k8s_manifests,
    listen_port,
    load_k8s,
    mount_at,
    numeric_user,
    parse_dockerfile,
    pod_spec,
    pod_template,
    selector_matches,
    volume,
)

SIDECAR = K8S_DIR / "sidecar.yaml"
DAEMONSET = K8S_DIR / "daemonset-agent.yaml"


def _docs(kind: str, path: Path | None = None, lenient: bool = False) -> list[dict]:
    source = [(path, d) for d in load_k8s(path)] if path else all_k8s_documents(lenient)
    return [d for _, d in source if d.get("kind") == kind]


def _workloads(lenient: bool = False) -> list[dict]:
    return [d for _, d in all_k8s_documents(lenient) if d.get("kind") in WORKLOAD_KINDS]


def _one(items: list, what: str):
    assert len(items) == 1, f"expected exactly one {what}, found {len(items)}"
    return items[0]


def _image_uid() -> int:
    return numeric_user(parse_dockerfile(DOCKER_DIR / "agent.Dockerfile")[-1].last("USER").args)[0]


def test_manifests_exist():
    names = {p.name for p in k8s_manifests()}
    assert {"sidecar.yaml", "podmonitor.yaml", "daemonset-agent.yaml"} <= names, names


@pytest.mark.parametrize("path", k8s_manifests(), ids=lambda p: p.name)
def test_every_document_parses_and_names_itself(path: Path):
    docs = load_k8s(path)
    assert docs, f"{path.name} holds no document"
    for doc in docs:
        assert isinstance(doc, dict), doc
        assert doc.get("apiVersion") and doc.get("kind"), f"{path.name}: apiVersion and kind: {doc}"
        assert (doc.get("metadata") or {}).get("name"), f"{path.name}: metadata.name of a {doc['kind']}"


def test_names_are_unique_per_kind():
    seen = set()
    for _, doc in all_k8s_documents():
        key = (doc["kind"], doc["metadata"]["name"], doc["metadata"].get("namespace"))
        assert key not in seen, f"two {key[0]}s named {key[1]}"
        seen.add(key)


@pytest.mark.parametrize("doc", _workloads(lenient=True), ids=k8s_id)
def test_workload_selector_matches_its_pod_template(doc):
    assert selector_matches(doc["spec"]["selector"]["matchLabels"], pod_template(doc)["metadata"]["labels"])


def _sidecar_pod():
    deployment = _one(_docs("Deployment", SIDECAR), "Deployment in sidecar.yaml")
    spec = pod_spec(deployment)
    app = _one([c for c in spec["containers"] if is_instrumented_app(c)], "app container with LOOPWATCH=1")
    agent = _one([c for c in spec["containers"] if is_agent(c)], "agent container with --ring.dir")
    return deployment, spec, app, agent


def test_sidecar_containers_share_an_in_memory_emptydir():
    _, spec, app, agent = _sidecar_pod()
    ring_dir = flag_value(container_args(agent), "--ring.dir")
    assert container_env(app).get("LOOPWATCH_DIR") == ring_dir, "the app's LOOPWATCH_DIR is the agent's --ring.dir"
    agent_mount, app_mount = mount_at(agent, ring_dir), mount_at(app, ring_dir)
    assert agent_mount and app_mount, f"both containers mount {ring_dir}"
    assert agent_mount["name"] == app_mount["name"], "the same volume"
    assert not agent_mount.get("readOnly"), "the agent writes its read position into the rings"
    empty_dir = volume(spec, agent_mount["name"]).get("emptyDir")
    assert empty_dir is not None, "an emptyDir"
    assert empty_dir.get("medium") == "Memory", "memory-backed (tmpfs), like /dev/shm"
    assert empty_dir.get("sizeLimit"), "bounded"


def test_sidecar_containers_run_as_the_same_uid():
    _, spec, app, agent = _sidecar_pod()
    uids = {c["name"]: effective_uid(spec, c) for c in (app, agent)}
    assert None not in uids.values(), f"set runAsUser: {uids}"
    assert len(set(uids.values())) == 1, f"rings are 0600 and the agent reads only its own uid's: {uids}"
    assert set(uids.values()) == {_image_uid()}, f"the images' USER uid, {_image_uid()}: {uids}"


def test_sidecar_agent_port_probes_and_resources():
    _, _, _, agent = _sidecar_pod()
    ports = {p.get("name"): p["containerPort"] for p in agent.get("ports", [])}
    assert "metrics" in ports, "a container port named metrics"
    assert ports["metrics"] == listen_port(container_args(agent)), "the port of --web.listen-address"
    assert flag_value(container_args(agent), "--web.listen-address").startswith("0.0.0.0:")
    for probe in ("readinessProbe", "livenessProbe"):
        get = agent.get(probe, {}).get("httpGet")
        assert get, f"agent {probe}: httpGet"
        assert get["port"] in ("metrics", ports["metrics"]), get
        assert get["path"] != "/metrics", (f"{probe}: every GET /metrics counts as the scrape after which the "
                                           "agent removes a dead worker's ring; probe /api/status")
        assert get["path"] in ("/api/status", "/"), get
    resources = agent.get("resources", {})
    for section in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources.get(section, {})), f"agent resources.{section}: cpu and memory"


def test_sidecar_app_is_instrumented():
    _, _, app, _ = _sidecar_pod()
    env = container_env(app)
    assert env.get("LOOPWATCH") == "1"
    assert env.get("LOOPWATCH_SERVICE"), "a service label"
    assert flag_value(container_args(app), "--workers") == "4"


def _pods_selected(match_labels: dict) -> list[dict]:
    return [w for w in _workloads() if selector_matches(match_labels, pod_template(w)["metadata"]["labels"])]


@pytest.mark.parametrize("monitor", _docs("PodMonitor", lenient=True), ids=k8s_id)
def test_podmonitor_selects_pods_with_its_port(monitor):
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selected = _pods_selected(monitor["spec"]["selector"]["matchLabels"])
    assert selected, f"PodMonitor {monitor['metadata']['name']} selects no pod template"
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        for workload in selected:
            assert endpoint["port"] in container_port_names(pod_spec(workload)), \
                f"port {endpoint['port']!r} is not a named container port of {workload['metadata']['name']}"
            assert any(is_agent(c) for c in pod_spec(workload)["containers"]), "it scrapes an agent"
        assert endpoint.get("path", "/metrics") == "/metrics"
        job = [r for r in endpoint.get("relabelings", []) if r.get("targetLabel") == "job"]
        assert job and job[-1].get("replacement") == "loopwatch", \
            "dashboards/alerts.yml and the dashboards select job=\"loopwatch\""


def test_podmonitor_scrapes_the_sidecar_deployment():
    deployment, *_ = _sidecar_pod()
    monitor = _one(_docs("PodMonitor", K8S_DIR / "podmonitor.yaml"), "PodMonitor in podmonitor.yaml")
    assert deployment in _pods_selected(monitor["spec"]["selector"]["matchLabels"])


def test_service_selects_the_sidecar_pods():
    deployment, spec, _, _ = _sidecar_pod()
    service = _one(_docs("Service", SIDECAR), "Service in sidecar.yaml")
    assert selector_matches(service["spec"]["selector"], pod_template(deployment)["metadata"]["labels"])
    names = container_port_names(spec)
    target_ports = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    for port in target_ports.values():
        assert isinstance(port, int) or port in names, f"targetPort {port!r} is no named container port"
    assert {"http", "metrics"} <= set(target_ports), target_ports


def _daemonset_and_app():
    daemonset = _one(_docs("DaemonSet", DAEMONSET), "DaemonSet in daemonset-agent.yaml")
    apps = [d for d in _docs("Deployment", DAEMONSET) if any(is_instrumented_app(c) for c in pod_spec(d)["containers"])]
    return daemonset, _one(apps, "instrumented app Deployment in daemonset-agent.yaml")


def _host_path_at(spec: dict, container: dict, path: str) -> str:
    mount = mount_at(container, path)
    assert mount, f"{container['name']} mounts nothing at {path}"
    host_path = volume(spec, mount["name"]).get("hostPath")
    assert host_path, f"{container['name']}: {path} is a hostPath volume"
    return host_path["path"]


def test_daemonset_and_app_share_the_host_path():
    daemonset, app_deployment = _daemonset_and_app()
    ds_spec, app_spec = pod_spec(daemonset), pod_spec(app_deployment)
    agent = _one([c for c in ds_spec["containers"] if is_agent(c)], "agent container")
    app = _one([c for c in app_spec["containers"] if is_instrumented_app(c)], "app container")
    ring_dir = flag_value(container_args(agent), "--ring.dir")
    app_dir = container_env(app)["LOOPWATCH_DIR"]
    assert _host_path_at(ds_spec, agent, ring_dir) == _host_path_at(app_spec, app, app_dir), "the same host directory"


def test_daemonset_uid_policy_and_unique_service_per_pod():
    daemonset, app_deployment = _daemonset_and_app()
    ds_spec, app_spec = pod_spec(daemonset), pod_spec(app_deployment)
    agent = _one([c for c in ds_spec["containers"] if is_agent(c)], "agent container")
    app = _one([c for c in app_spec["containers"] if is_instrumented_app(c)], "app container")
    agent_uid, app_uid = effective_uid(ds_spec, agent), effective_uid(app_spec, app)
    assert agent_uid not in (None, 0), "the agent runs as a fixed non-root uid"
    allowed = flag_value(container_args(agent), "--ring.allowed-uids")
    trusted = {int(u) for u in allowed.split(",")} if allowed else {agent_uid}
    assert app_uid in trusted, f"the app's uid {app_uid} must be in --ring.allowed-uids {sorted(trusted)}"
    # pids repeat across pods of a node: a service name unique per pod keeps (service, pid, loop) unique
    env = container_env(app)
    assert "$(POD_NAME)" in str(env.get("LOOPWATCH_SERVICE")), "LOOPWATCH_SERVICE must include $(POD_NAME)"
    assert env.get("POD_NAME") == {"fieldRef": {"fieldPath": "metadata.name"}}, "POD_NAME from the downward API"
