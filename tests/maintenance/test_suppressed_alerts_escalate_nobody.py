"""During a maintenance window, a suppressed alert escalates nobody: no incident, so no
escalation and no page, now or when its steps would have been due; the same alert outside
the window escalates by the runbook's policy."""

import datetime as dt

from incidents.models import Escalation, EscalationPage, Incident
from incidents.services import alert_receive
from incidents.services.escalation import escalation_load_defaults, escalations_sweep
from maintenance.services import window_start
from opsportal.people.models import Notification
from opsportal.people.services import people_load_defaults


def fire(system, fingerprint: str):
    return alert_receive(
        fingerprint=fingerprint,
        status="firing",
        title=f"Disk almost full on {system.name}",
        severity="sev1",
        category="database",
        systems=[system.name],
    )


def test_a_suppressed_sev1_alert_escalates_nobody(
    schedule, superuser, postgres_target, redis_target
):
    people_load_defaults()
    escalation_load_defaults()
    window = schedule(systems=[postgres_target], starts_in=dt.timedelta(0))
    window_start(window=window, actor=superuser, override_reason="emergency patch")

    suppressed = fire(postgres_target, "disk-pg")
    assert suppressed.suppressed_by == window and suppressed.incident is None
    assert not Escalation.objects.exists() and not Notification.objects.exists()
    escalations_sweep(now=window.ends_at + dt.timedelta(hours=2))
    assert not EscalationPage.objects.exists() and not Notification.objects.exists()

    # The same kind of alert on a system outside the window escalates as usual.
    fired = fire(redis_target, "disk-redis")
    incident = Incident.objects.get(pk=fired.incident_id)
    assert incident.escalations.get().policy_name == "SEV1 (urgent)"
