"""The automatic part of the weekly security scan: Django's deployment checks and a
known-vulnerabilities audit of the portal's pinned requirements (pip-audit).

A tool that cannot reach its data is recorded as "not run", never as passed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core import checks

RAN, NOT_RUN, PARTIAL, FOUND = "passed", "not run", "partly run", "findings"
PIP_AUDIT_TIMEOUT_SECONDS = 300


def deployment_checks() -> dict:
    """`manage.py check --deploy`, as data."""
    messages = checks.run_checks(include_deployment_checks=True)
    issues = [
        {
            "id": m.id or "",
            "level": {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}.get(
                m.level, str(m.level)
            ),
            "message": str(m.msg),
            "hint": str(m.hint or ""),
        }
        for m in messages
        if m.level >= checks.WARNING
    ]
    return {
        "status": FOUND if issues else RAN,
        "summary": f"{len(issues)} warning(s) or error(s)" if issues else "no issues",
        "issues": issues,
    }


def requirements_audit(*, requirements: Path | None = None) -> dict:
    """pip-audit over the pinned requirements; "not run" when it cannot reach its data."""
    requirements = requirements or Path(settings.BASE_DIR) / "requirements.txt"
    executable = Path(sys.executable).with_name("pip-audit")
    if not executable.exists():
        return {"status": NOT_RUN, "summary": "pip-audit is not installed.", "vulnerabilities": []}
    try:
        completed = subprocess.run(
            [
                str(executable),
                "--requirement",
                str(requirements),
                "--no-deps",
                "--disable-pip",
                "--format",
                "json",
                "--progress-spinner",
                "off",
                "--timeout",
                "20",
            ],
            capture_output=True,
            text=True,
            timeout=PIP_AUDIT_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {
            "status": NOT_RUN,
            "summary": f"pip-audit did not finish within {PIP_AUDIT_TIMEOUT_SECONDS} s.",
            "vulnerabilities": [],
        }
    try:
        report = json.loads(completed.stdout)
    except ValueError:
        reason = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
        return {
            "status": NOT_RUN,
            "summary": "pip-audit failed: " + " ".join(reason)[:1000],
            "vulnerabilities": [],
        }
    return summarise_audit(report)


def summarise_audit(report: dict) -> dict:
    dependencies = report.get("dependencies", [])
    skipped = [d for d in dependencies if d.get("skip_reason")]
    audited = [d for d in dependencies if not d.get("skip_reason")]
    vulnerabilities = [
        {
            "package": d["name"],
            "version": d.get("version", ""),
            "id": v.get("id", ""),
            "fix_versions": v.get("fix_versions", []),
            "description": (v.get("description") or "")[:500],
        }
        for d in audited
        for v in d.get("vulns", [])
    ]
    if not audited:
        # Every package skipped (no index or vulnerability service reachable): nothing was
        # audited, whatever the exit code says.
        return {
            "status": NOT_RUN,
            "summary": f"No package could be audited ({len(skipped)} skipped): "
            + (skipped[0]["skip_reason"] if skipped else "no dependencies found"),
            "vulnerabilities": [],
            "skipped": [d["name"] for d in skipped],
        }
    summary = f"{len(audited)} package(s) audited, {len(vulnerabilities)} known vulnerabilit(ies)"
    if skipped:
        summary += f"; {len(skipped)} not audited: " + ", ".join(d["name"] for d in skipped)
    return {
        "status": FOUND if vulnerabilities else (PARTIAL if skipped else RAN),
        "summary": summary,
        "vulnerabilities": vulnerabilities,
        "skipped": [d["name"] for d in skipped],
    }
