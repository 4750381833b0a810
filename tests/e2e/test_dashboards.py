"""The Grafana dashboards (dashboards/*.json) and the Prometheus rules (dashboards/alerts.yml) of
issue 7, against real data. Grafana cannot run here, so every query a panel would send is sent to a
real Prometheus instead.

Static (no process): every dashboard JSON is valid Grafana 10 JSON with a unique uid, unique panel
ids (rows' nested panels included), a `datasource` variable, and every target is a PromQL `expr` on
the data source `${datasource}`; every `$variable` used is defined; no quantile is averaged
(`avg(histogram_quantile(...))` and the like) and every histogram_quantile aggregates its buckets with
`sum by (..., le)`; data links point to dashboards that exist.

Live (one scenario for the whole module, about 20 s): loopwatch-agent, a Prometheus 2.42 scraping it
every second with dashboards/alerts.yml loaded, and `uvicorn examples.demo_app:app --workers 2`
(uvloop, LOOPWATCH=1) under a load that gives every panel data:
  - worker B: plain requests and /fanout?n=50 (handles), a few /block?ms=150 (slow callbacks);
  - worker A: 12 connections in /sleep?ms=100 whose timers come due while 18 /block?ms=200 hold the
    loop (loop lag above 100 ms, slow callbacks), some /fanout, then a 4.5 s /block: a stall that
    Prometheus scrapes while it lasts (in-flight age above 1 s, loopwatch_stalls_total, watchdog).
Then every target of every panel of every dashboard is run, with Grafana's variables replaced the way
Grafana would: `$__rate_interval` & co. by fixed durations, `service`/`instance`/`pid`/`callback` by
running the variable's own `label_values(...)` query against Prometheus and formatting the values
like Grafana's Prometheus data source ("All" = the regex alternation of every value, or allValue);
each must succeed and return at least one series with a finite value. Every recording rule must have
recorded data; every alert expression must evaluate; LoopwatchLoopStalled must fire while the stall
lasts, naming the callback, and LoopwatchLagP99High / LoopwatchSlowCallbacksFrequent must hold data
(pending) for worker A afterwards. LoopwatchSamplesDropped and LoopwatchAgentDown must stay silent
here: a healthy stack neither drops samples nor loses its agent, so their firing cases are covered
only by the promtool unit tests (dashboards/alerts_test.yml, run by test_alert_rules.py).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from e2e_processes import REPO, Stack, connect_to_both_workers, get_json, http_get, http_json, wait_until

DASHBOARDS = REPO / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARDS.rglob("*.json"))
RULES = DASHBOARDS / "alerts.yml"
EXPECTED_UIDS = {"loopwatch-overview", "loopwatch-worker", "loopwatch-callbacks"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

SERVICE = "e2e-dashboards"
RUN_ASGI = "run_asgi"  # uvicorn's request Task step: where an `async def` endpoint's body runs
STALL_MS = 4500

# Grafana's built-in variables, as Grafana would set them for "last 2 minutes" with a 1 s scrape
# interval (the live queries run at most 2 minutes after Prometheus started).
RANGE_S = 120
BUILTINS = {
    "__rate_interval": "15s",
    "__interval": "2s",
    "__interval_ms": "2000",
    "__range": f"{RANGE_S}s",
    "__range_s": str(RANGE_S),
    "__range_ms": str(RANGE_S * 1000),
}
RANGE_QUERY_S = 60  # range queries cover the last minute at a 2 s step
STEP_S = 2

# What each alert does on the live stack. A new alert must be added here (and to alerts_test.yml).
LIVE_ALERTS = {
    "LoopwatchLoopStalled": "fires during the stall",
    "LoopwatchLagP99High": "has data for the blocked worker",
    "LoopwatchSlowCallbacksFrequent": "has data for the blocked worker",
    # Only promtool covers their firing: the live stack drops nothing and its agent stays up.
    "LoopwatchSamplesDropped": "silent",
    "LoopwatchAgentDown": "silent",
}


# ------------------------------------------------------------------------------------------ helpers
def load(path: Path) -> dict:
    return json.loads(path.read_text())


def all_panels(panels: list[dict]):
    """Every panel, rows' nested panels (collapsed rows keep theirs in `panels`) included."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels") or [])


def panel_targets(dashboard: dict):
    for panel in all_panels(dashboard.get("panels", [])):
        for target in panel.get("targets") or []:
            yield panel, target


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


_AGGREGATE = r"\b(?:avg|sum|avg_over_time|sum_over_time|quantile|quantile_over_time|stddev|stdvar)\b"
# An aggregation (optionally `by (...)`) applied to a quantile: histogram_quantile(...) or a recorded
# quantile such as loopwatch:loop_lag_seconds:p99_5m.
AVERAGED_QUANTILE = re.compile(
    _AGGREGATE + r"\s*(?:(?:by|without)\s*\([^)]*\)\s*)?\(\s*(?:[0-9.]+\s*,\s*)?"
    r"(?:histogram_quantile\b|[a-zA-Z_]*:[a-zA-Z_:]*:p\d+)")
HISTOGRAM_QUANTILE = re.compile(r"histogram_quantile\s*\(")
WELL_FORMED_QUANTILE = re.compile(
    r"histogram_quantile\s*\(\s*[0-9.]+\s*,\s*(?:sum\s+by\s*\(([^)]*)\)|[a-zA-Z_]*:[a-zA-Z_:]*\s*\)|"
    r"[a-zA-Z_:]+_bucket\b)")


def quantile_problems(expr: str) -> list[str]:
    problems = []
    if AVERAGED_QUANTILE.search(expr):
        problems.append("aggregates quantiles (average/sum/quantile of quantiles is meaningless): "
                        "take histogram_quantile of the summed bucket rates instead")
    starts = HISTOGRAM_QUANTILE.findall(expr)
    good = WELL_FORMED_QUANTILE.findall(expr)
    if len(good) != len(starts):
        problems.append("histogram_quantile must take `sum by (..., le) (rate(..._bucket[...]))`")
    for by in good:
        if by and "le" not in [label.strip() for label in by.split(",")]:
            problems.append(f"histogram_quantile over `sum by ({by})` lacks le")
    return problems


VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)|\[\[(\w+)\]\]")


def variables_used(text: str) -> set[str]:
    return {m.group(1) or m.group(3) or m.group(4) for m in VARIABLE.finditer(text)}


def substitute(text: str, values: dict[str, str]) -> str:
    def replace(m: re.Match) -> str:
        name = m.group(1) or m.group(3) or m.group(4)
        if name in BUILTINS:
            return BUILTINS[name]
        if name not in values:
            raise AssertionError(f"${name} is neither a Grafana built-in nor a variable of the dashboard")
        return values[name]
    return VARIABLE.sub(replace, text)


def regex_escape(value: str) -> str:
    """Grafana's prometheusSpecialRegexEscape: a value of a multi-value variable inside =~"..."."""
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value)


def format_values(var: dict, chosen: list[str]) -> str:
    """How Grafana's Prometheus data source writes a multi-value variable into a query."""
    escaped = [regex_escape(v) for v in chosen]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


# ----------------------------------------------------------------------------------- static checks
def test_the_expected_dashboards_exist_with_unique_uids():
    uids = [load(path).get("uid") for path in DASHBOARD_FILES]
    assert len(uids) == len(set(uids)), f"duplicate dashboard uids: {uids}"
    assert EXPECTED_UIDS <= set(uids), f"missing dashboards: {EXPECTED_UIDS - set(uids)}"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_json_is_well_formed(path: Path):
    dashboard = load(path)
    problems: list[str] = []
    if not dashboard.get("uid") or not dashboard.get("title"):
        problems.append("no uid or title")
    if not 36 <= dashboard.get("schemaVersion", 0) <= 39:
        problems.append(f"schemaVersion {dashboard.get('schemaVersion')} is not Grafana 10's (36-39)")
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("no `datasource` variable of type datasource, query prometheus")
    for var in variables.values():
        if var["type"] == "query":
            if var.get("datasource") != DATASOURCE:
                problems.append(f"variable {var['name']}: datasource is not {DATASOURCE}")
            if not (var.get("definition") or "").startswith("label_values("):
                problems.append(f"variable {var['name']}: not a label_values(...) query")

    ids = [panel.get("id") for panel in all_panels(dashboard.get("panels", []))]
    duplicates = sorted({i for i in ids if ids.count(i) > 1}, key=str)
    if None in ids or duplicates:
        problems.append(f"panel ids missing or duplicated: {duplicates}")
    count = 0
    for panel in all_panels(dashboard.get("panels", [])):
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        if "gridPos" not in panel:
            problems.append(f"{where}: no gridPos")
        targets = panel.get("targets") or []
        if panel.get("type") in ("row", "text"):
            continue
        if not targets:
            problems.append(f"{where}: no targets")
        if panel.get("datasource") != DATASOURCE:
            problems.append(f"{where}: datasource {panel.get('datasource')} is not {DATASOURCE}")
        refs = [t.get("refId") for t in targets]
        if len(refs) != len(set(refs)):
            problems.append(f"{where}: duplicate refIds {refs}")
        for target in targets:
            count += 1
            expr = (target.get("expr") or "").strip()
            if target.get("datasource") != DATASOURCE:
                problems.append(f"{where} {target.get('refId')}: datasource {target.get('datasource')}")
            if not expr:
                problems.append(f"{where} {target.get('refId')}: no expr")
            problems += [f"{where} {target.get('refId')}: {p}" for p in quantile_problems(expr)]
            unknown = variables_used(expr) - set(variables) - set(BUILTINS)
            if unknown:
                problems.append(f"{where}: uses undefined variables {sorted(unknown)}")
            if panel["type"] == "heatmap" and (target.get("format") != "heatmap" or "by (le)" not in expr):
                problems.append(f"{where}: heatmap targets need format heatmap and `sum by (le)`")
            if target.get("format") == "table" and not target.get("instant"):
                problems.append(f"{where}: table targets should be instant queries")
    if count == 0:
        problems.append("no targets at all")
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


def test_links_point_to_dashboards_that_exist():
    uids = {load(path)["uid"] for path in DASHBOARD_FILES}
    problems = []
    for path in DASHBOARD_FILES:
        text = path.read_text()
        for uid in re.findall(r"/d/([\w-]+)", text):
            if uid not in uids:
                problems.append(f"{path.name} links to /d/{uid}")
        dashboard = load(path)
        if not any(link.get("type") == "dashboards" and "loopwatch" in link.get("tags", [])
                   for link in dashboard.get("links", [])):
            problems.append(f"{path.name}: no dashboard link to the other loopwatch dashboards")
    assert not problems, "\n".join(problems)


def test_grafana_provisioning_files_match_the_compose_stack():
    sources = yaml.safe_load((DASHBOARDS / "provisioning/datasources/loopwatch.yml").read_text())["datasources"]
    assert [(s["name"], s["uid"], s["type"], s["url"], s["isDefault"]) for s in sources] == [
        ("Prometheus", "loopwatch-prometheus", "prometheus", "http://prometheus:9090", True)]
    providers = yaml.safe_load((DASHBOARDS / "provisioning/dashboards/loopwatch.yml").read_text())["providers"]
    assert [(p["type"], p["folder"], p["options"]["path"]) for p in providers] == [
        ("file", "loopwatch", "/var/lib/grafana/dashboards/loopwatch")]


def test_no_rule_averages_quantiles():
    problems = [f"{rule.get('record') or rule.get('alert')}: {p}" for rule in rules()
                for p in quantile_problems(rule["expr"])]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("expr", [
    'avg(histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))))',
    'avg by (service) (histogram_quantile(0.99, sum by (service, le) (rate(x_bucket[5m]))))',
    'quantile(0.9, histogram_quantile(0.99, sum by (pid, le) (rate(x_bucket[5m]))))',
    'avg_over_time(loopwatch:loop_lag_seconds:p99_5m[1h])',
    'histogram_quantile(0.99, sum by (service) (rate(x_bucket[5m])))',
    'histogram_quantile(0.99, avg by (le) (rate(x_bucket[5m])))',
])
def test_the_quantile_check_rejects_bad_queries(expr):
    assert quantile_problems(expr)


# ------------------------------------------------------------------------------------- live scenario
@dataclass
class Live:
    stack: Stack
    prom_url: str = ""
    agent_url: str = ""
    app_url: str = ""
    stalled_pid: int = 0
    healthy_pid: int = 0
    t_stall: float = 0.0
    t_end: float = 0.0
    stall_alerts: list = field(default_factory=list)


def prom(live: Live, path: str, **params) -> dict:
    """GET a Prometheus API path -> its JSON, errors included (status "error", error text)."""
    query = urllib.parse.urlencode(params, doseq=True)
    status, body = http_get(f"{live.prom_url}{path}?{query}", timeout=20)
    try:
        return json.loads(body)
    except ValueError:
        return {"status": "error", "error": f"HTTP {status}: {body[:300]}"}


def instant(live: Live, expr: str, at: float) -> dict:
    return prom(live, "/api/v1/query", query=expr, time=f"{at:.3f}")


def data_of(reply: dict):
    assert reply.get("status") == "success", reply.get("error") or reply
    return reply["data"]


def result_of(reply: dict) -> list:
    return data_of(reply)["result"]


def run_threads(targets) -> list[threading.Thread]:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    return threads


@pytest.fixture(scope="module")
def live(request, tmp_path_factory):
    ring_dir = Path(tempfile.mkdtemp(prefix="loopwatch-dash-",
                                     dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None))
    stack = Stack(tmp_path_factory.mktemp("dashboards"))
    # conftest.py attaches the logs of item._loopwatch_stack to a failing test's report.
    for item in request.session.items:
        if item.module is request.module:
            item._loopwatch_stack = stack
    try:
        yield _run_scenario(Live(stack), ring_dir)
    finally:
        stack.stop_all()
        shutil.rmtree(ring_dir, ignore_errors=True)


def _run_scenario(live: Live, ring_dir: Path) -> Live:
    stack = live.stack
    _, live.agent_url = stack.start_agent(ring_dir)
    _, live.prom_url = stack.start_prometheus(live.agent_url.removeprefix("http://"), rule_files=(RULES,))
    env = dict(os.environ, LOOPWATCH="1", LOOPWATCH_DIR=str(ring_dir), LOOPWATCH_SERVICE=SERVICE)
    _, live.app_url = stack.start_uvicorn("examples.demo_app:app", env, "--workers", "2", "--loop", "uvloop",
                                          "--no-access-log", "--timeout-keep-alive", "120")
    conns, live.stalled_pid, live.healthy_pid = connect_to_both_workers(live.app_url, need_on_p=14, need_on_other=2)
    conns_a, conns_b = conns.by_pid[live.stalled_pid][:14], conns.by_pid[live.healthy_pid][:2]

    # The load must start after Prometheus' first scrape of both workers, or rate() misses it.
    def scraped():
        series = result_of(instant(live, f'loopwatch_loop_info{{service="{SERVICE}"}}', time.time()))
        return {int(s["metric"]["pid"]) for s in series} >= {live.stalled_pid, live.healthy_pid}
    wait_until(scraped, 20, "Prometheus to scrape both workers", tuple(stack.procs))

    stop = threading.Event()
    errors: list[BaseException] = []

    def guarded(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # reported by the main thread
                errors.append(e)
        return run

    sleepers, blocker, fanout_a = conns_a[:12], conns_a[12], conns_a[13]
    plain_b, slow_b = conns_b

    def sleeper(c: http.client.HTTPConnection):
        def run():
            while not stop.is_set():
                get_json(c, "/sleep?ms=100")
        return run

    def block_a():
        for _ in range(18):
            get_json(blocker, "/block?ms=200")
            time.sleep(0.08)

    def fanouts_a():
        while not stop.is_set():
            get_json(fanout_a, "/fanout?n=50")
            time.sleep(0.2)

    def load_b():
        i = 0
        while not stop.is_set():
            get_json(plain_b, "/fanout?n=50" if i % 2 else "/")
            i += 1
            time.sleep(0.002)  # leave CPU to the rest (CI runs on 2 shared cores)

    def slow_b_calls():
        for _ in range(3):
            get_json(slow_b, "/block?ms=150")
            time.sleep(0.5)

    background = run_threads([guarded(sleeper(c)) for c in sleepers] +
                             [guarded(fanouts_a), guarded(load_b)])
    for t in run_threads([guarded(block_a), guarded(slow_b_calls)]):
        t.join(60)
    assert not errors, errors

    # The stall: worker A stuck in one callback for STALL_MS while its sleepers' timers wait.
    stall = run_threads([guarded(lambda: get_json(blocker, f"/block?ms={STALL_MS}"))])[0]
    stalled_expr = next(r["expr"] for r in rules() if r.get("alert") == "LoopwatchLoopStalled")

    def stalled_now():
        at = time.time()
        series = result_of(instant(live, stalled_expr, at))
        if any(s["metric"].get("pid") == str(live.stalled_pid) for s in series):
            live.t_stall = at
            return True
        return False
    wait_until(stalled_now, STALL_MS / 1000, "Prometheus to see worker A's callback in flight for > 1 s")

    def stall_alert_fires():
        alerts = http_json(live.prom_url + "/api/v1/alerts")["data"]["alerts"]
        live.stall_alerts = [a for a in alerts if a["labels"]["alertname"] == "LoopwatchLoopStalled"
                             and a["state"] == "firing"]
        return live.stall_alerts
    wait_until(stall_alert_fires, 3, "LoopwatchLoopStalled to fire")
    stall.join(STALL_MS / 1000 + 10)
    stop.set()
    for t in background:
        t.join(30)
    assert not errors, errors
    conns.close()
    time.sleep(2.5)  # the last samples: drained (50 ms), scraped (1 s), rules evaluated (1 s)
    live.t_end = time.time()
    return live


def label_values(live: Live, query: str, regex: str = "") -> list[str]:
    """Runs a Grafana `label_values(selector, label)` variable query the way Grafana does."""
    m = re.fullmatch(r"\s*label_values\(\s*(?:(.+?)\s*,\s*)?(\w+)\s*\)\s*", query)
    assert m, f"unsupported variable query {query!r}"
    selector, label = m.groups()
    if selector:
        reply = prom(live, "/api/v1/series", **{"match[]": selector}, start=f"{live.t_end - RANGE_S:.3f}",
                     end=f"{live.t_end:.3f}")
        values = {s[label] for s in data_of(reply) if label in s}
    else:
        values = set(data_of(prom(live, f"/api/v1/label/{label}/values")))
    if regex:
        values = {v for v in values if re.search(regex.strip("/"), v)}
    return sorted(values)


def resolve_variables(live: Live, dashboard: dict, chosen: dict[str, list[str]]) -> tuple[dict, dict]:
    """-> (replacement text per variable, every value each query variable offered). Variables not in
    `chosen` are set to All (allValue, or every value like Grafana's "All")."""
    text: dict[str, str] = {}
    offered: dict[str, list[str]] = {}
    for var in dashboard["templating"]["list"]:
        name = var["name"]
        if var["type"] == "datasource":
            text[name] = "loopwatch-prometheus"
        elif var["type"] == "query":
            query = substitute(var.get("definition") or var["query"]["query"], text)
            values = label_values(live, query, var.get("regex", ""))
            assert values, f"variable {name}: {query} returned no value"
            offered[name] = values
            if name in chosen:
                text[name] = format_values(var, chosen[name])
            else:
                text[name] = var.get("allValue") or format_values(var, values)
        elif var["type"] in ("custom", "constant", "textbox", "interval"):
            current = var.get("current", {}).get("value") or var.get("query", "").split(",")[0]
            text[name] = current if isinstance(current, str) else current[0]
        else:
            pytest.fail(f"variable {name}: type {var['type']} is not handled by this test")
    return text, offered


def check_target(live: Live, panel: dict, target: dict, values: dict[str, str]) -> list[str]:
    where = f"panel {panel['id']} {panel['title']!r} {target['refId']}"
    expr = substitute(target["expr"], values)
    if "$" in expr:
        return [f"{where}: unresolved variable in {expr}"]
    replies = []
    if target.get("instant"):
        replies.append(("instant", instant(live, expr, live.t_end)))
    if target.get("range", not target.get("instant")):
        replies.append(("range", prom(live, "/api/v1/query_range", query=expr,
                                      start=f"{live.t_end - RANGE_QUERY_S:.3f}", end=f"{live.t_end:.3f}",
                                      step=str(STEP_S))))
    problems = []
    for kind, reply in replies:
        if reply.get("status") != "success":
            problems.append(f"{where} ({kind}): {reply.get('error')}\n    {expr}")
            continue
        result = reply["data"]["result"]
        values_seen = [float(v) for s in result for _, v in (s.get("values") or [s["value"]])]
        if not result:
            problems.append(f"{where} ({kind}): no series\n    {expr}")
        elif not any(math.isfinite(v) for v in values_seen):
            problems.append(f"{where} ({kind}): no finite value (all NaN/Inf)\n    {expr}")
        if target.get("format") == "heatmap" and not all("le" in s["metric"] for s in result):
            problems.append(f"{where} ({kind}): heatmap series without le\n    {expr}")
    return problems


@pytest.fixture
def live_stack(live, request):
    request.node._loopwatch_stack = live.stack
    return live


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_panel_query_returns_data_from_a_real_agent(live_stack, path):
    live = live_stack
    dashboard = load(path)
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    # Pass 1: every variable at All. Pass 2 (drill-down): the stalled worker, and uvicorn's request
    # task as the callback (its name has regex metacharacters: tests Grafana's escaping).
    all_values, offered = resolve_variables(live, dashboard, {})
    if "service" in offered:
        assert SERVICE in offered["service"], offered
    if "pid" in offered:
        assert set(offered["pid"]) == {str(live.stalled_pid), str(live.healthy_pid)}, offered
    if "instance" in offered:
        assert offered["instance"] == [live.agent_url.removeprefix("http://")], offered
    passes = [("all", all_values)]
    drill: dict[str, list[str]] = {}
    if "pid" in variables:
        drill["pid"] = [str(live.stalled_pid)]
    if "callback" in variables:
        run_asgi = [c for c in offered["callback"] if RUN_ASGI in c]
        assert run_asgi, offered["callback"]
        drill["callback"] = run_asgi[:1]
    if drill:
        passes.append((f"drill-down {drill}", resolve_variables(live, dashboard, drill)[0]))

    problems = []
    for name, values in passes:
        for panel, target in panel_targets(dashboard):
            problems += [f"[{name}] {p}" for p in check_target(live, panel, target, values)]
    assert not problems, f"{path.name}: {len(problems)} failing queries\n" + "\n".join(problems)

    # "Stalled loops now" counts the stall while it lasts and returns 0 (not nothing) afterwards.
    for panel, target in panel_targets(dashboard):
        if panel["title"] == "Stalled loops now":
            expr = substitute(target["expr"], all_values)
            during = result_of(instant(live, expr, live.t_stall))
            after = result_of(instant(live, expr, live.t_end))
            assert [float(s["value"][1]) for s in during] == [1.0], (expr, during)
            assert [float(s["value"][1]) for s in after] == [0.0], (expr, after)


def test_every_rule_works_on_a_real_prometheus(live_stack):
    live = live_stack
    all_rules = rules()
    alerts = [r["alert"] for r in all_rules if "alert" in r]
    assert set(alerts) == set(LIVE_ALERTS), (
        "LIVE_ALERTS must say what each alert does on the live stack; alerts.yml has "
        f"{sorted(alerts)}, LIVE_ALERTS {sorted(LIVE_ALERTS)}")

    # Prometheus loaded every rule and evaluates it without error.
    loaded = {r["name"]: r for g in http_json(live.prom_url + "/api/v1/rules")["data"]["groups"] for r in g["rules"]}
    for rule in all_rules:
        name = rule.get("record") or rule["alert"]
        assert name in loaded, f"Prometheus did not load {name}: {sorted(loaded)}"
        assert loaded[name]["health"] == "ok", (name, loaded[name].get("lastError"))

    problems = []
    a = str(live.stalled_pid)
    for rule in all_rules:
        name = rule.get("record") or rule["alert"]
        try:
            now = result_of(instant(live, rule["expr"], live.t_end))
            if "record" in rule:
                recorded = result_of(instant(live, rule["record"], live.t_end))
                if not recorded:
                    problems.append(f"recording rule {name}: no data recorded")
                continue
            expect = LIVE_ALERTS[name]
            if expect == "silent" and now:
                problems.append(f"{name} fires on a healthy stack: {now}")
            if expect == "has data for the blocked worker":
                if not any(s["metric"].get("pid") == a for s in now):
                    problems.append(f"{name}: no data for worker {a}: {now}")
                # ... and the rule engine holds it pending (for: 5m) with the same labels.
                pending = result_of(instant(live, f'ALERTS{{alertname="{name}", pid="{a}"}}', live.t_end))
                if not pending:
                    problems.append(f"{name}: not pending in Prometheus for worker {a}")
            if expect == "fires during the stall":
                during = result_of(instant(live, rule["expr"], live.t_stall))
                if not any(s["metric"].get("pid") == a and RUN_ASGI in s["metric"].get("callback", "")
                           for s in during):
                    problems.append(f"{name}: no stalled worker {a} running {RUN_ASGI} at the stall: {during}")
                if now:
                    problems.append(f"{name}: still fires after the stall: {now}")
        except AssertionError as e:
            problems.append(f"{name}: {e}\n    {rule['expr']}")
    assert not problems, "\n".join(problems)

    # The real alert, as Alertmanager would have received it: worker, callback and runbook filled in.
    fired = [x for x in live.stall_alerts if x["labels"].get("pid") == a]
    assert fired, live.stall_alerts
    alert = fired[0]
    assert RUN_ASGI in alert["labels"]["callback"], alert
    assert alert["labels"]["service"] == SERVICE and alert["labels"]["severity"], alert
    assert RUN_ASGI in alert["annotations"]["description"] and f"pid {a}" in alert["annotations"]["description"], alert
    assert "/api/stalls" in alert["annotations"]["runbook"], alert
