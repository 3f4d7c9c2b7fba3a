"""deploy/: the Prometheus configuration and rules pass promtool and mirror the portal's
default rules; the Grafana dashboard only charts metrics the portal exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from opsportal.monitoring.catalogue import METRICS
from opsportal.monitoring.services import DEFAULT_RULES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True)


def test_prometheus_config_and_rules_pass_promtool():
    config = promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    rules = promtool("check", "rules", str(DEPLOY / "prometheus" / "opsportal-rules.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    # One Prometheus rule covers both disk rules (Docker hosts and backup locations), and one
    # more watches that the portal keeps exporting.
    assert f"SUCCESS: {len(DEFAULT_RULES)} rules found" in rules.stdout


def test_prometheus_rules_mirror_the_portal_defaults():
    text = (DEPLOY / "prometheus" / "opsportal-rules.yml").read_text()
    exprs = " ".join(re.findall(r"^\s+expr: (.+)$", text, re.MULTILINE))
    for _name, metric, _kind, _cmp, _threshold, *_rest in DEFAULT_RULES:
        assert METRICS[metric].prometheus_name in exprs, metric
    runbooks = set(re.findall(r"^\s+runbook: (.+)$", text, re.MULTILINE))
    assert {rule[8] for rule in DEFAULT_RULES if rule[8]} <= runbooks


def test_grafana_dashboard_charts_exported_metrics():
    dashboard = json.loads((DEPLOY / "grafana" / "opsportal-dashboard.json").read_text())
    exported = {spec.prometheus_name for spec in METRICS.values()} | {
        "opsportal_alerts_firing",
        "opsportal_system_last_check_timestamp_seconds",
        "opsportal_backup_last_success_timestamp_seconds",
        "opsportal_system_in_maintenance",
    }
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"opsportal_[a-z0-9_]+", target["expr"])
    }
    assert used and used <= exported, used - exported
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
