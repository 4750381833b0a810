"""The Prometheus rules of dashboards/alerts.yml (issue 7), checked offline with promtool:

- `promtool check rules dashboards/alerts.yml` accepts the file (syntax, PromQL, templates);
- `promtool test rules dashboards/alerts_test.yml` passes (each alert fires on bad input series and
  stays silent on healthy ones, with the expected labels and annotations);
- every alert of alerts.yml has, in alerts_test.yml, at least one case where it fires (non-empty
  exp_alerts) and one where it must not (empty exp_alerts): a new alert without tests fails here;
- every alert carries a severity label and summary, description and runbook annotations.

The same rules also run against a real Prometheus scraping a real agent in test_dashboards.py.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from e2e_processes import REPO

DASHBOARDS = REPO / "dashboards"
RULES = DASHBOARDS / "alerts.yml"
RULE_TESTS = DASHBOARDS / "alerts_test.yml"


def promtool() -> str:
    path = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(path).exists():
        pytest.fail("promtool is missing (apt-get install prometheus)")
    return path


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules_accepts_alerts_yml():
    result = run(promtool(), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_promtool_unit_tests_pass():
    result = run(promtool(), "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "FAILED" not in result.stdout, result.stdout


def test_every_alert_has_a_firing_and_a_silent_test_case():
    names = [rule["alert"] for rule in alert_rules()]
    assert names, f"no alert in {RULES}"
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert [Path(f).name for f in tests["rule_files"]] == [RULES.name]
    fires: dict[str, int] = defaultdict(int)
    silent: dict[str, int] = defaultdict(int)
    for group in tests["tests"]:
        for case in group.get("alert_rule_test") or []:
            if case.get("exp_alerts"):
                fires[case["alertname"]] += 1
            else:
                silent[case["alertname"]] += 1
    missing = [f"{name}: {what}" for name in names
               for what, cases in (("a case where it fires", fires), ("a case where it stays silent", silent))
               if not cases.get(name)]
    assert not missing, f"{RULE_TESTS.name} lacks:\n  " + "\n  ".join(missing)
    unknown = sorted((set(fires) | set(silent)) - set(names))
    assert not unknown, f"{RULE_TESTS.name} tests alerts that {RULES.name} does not define: {unknown}"


def test_every_alert_has_severity_summary_description_and_runbook():
    problems = []
    for rule in alert_rules():
        if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            problems.append(f"{rule['alert']}: severity label critical|warning|info")
        for key in ("summary", "description", "runbook"):
            if not rule.get("annotations", {}).get(key, "").strip():
                problems.append(f"{rule['alert']}: annotation {key}")
    assert not problems, "missing:\n  " + "\n  ".join(problems)
