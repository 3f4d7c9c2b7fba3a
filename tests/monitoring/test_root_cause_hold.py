"""Monitoring's side of one page per root cause: an alert about a system that runs on a
Docker engine which does not answer waits (undelivered) for the engine's own alert, but not
for ever: past HOLD_FOR_HOST_SECONDS it is delivered on its own."""

from __future__ import annotations

import datetime as dt

import pytest

from incidents.models import Alert, Incident
from incidents.services import incidents_load_defaults
from opsportal.audit.models import AuditRecord
from opsportal.monitoring import services
from opsportal.monitoring.models import AlertState, AlertStatus, CollectionSchedule
from opsportal.monitoring.services.alert_delivery import HOLD_FOR_HOST_SECONDS
from opsportal.systems.models import DockerEngine, PostgresDatabase
from tests import realsystems


@pytest.fixture
def database_on_dead_engine(db, tmp_path):
    incidents_load_defaults()
    services.monitoring_load_defaults()
    engine = DockerEngine.objects.create(
        name="gone-engine", base_url=f"unix://{tmp_path}/no.sock", timeout_seconds=2
    )
    database = PostgresDatabase.objects.create(
        name="orders-db", host="127.0.0.1", port=realsystems.free_port(), dbname="orders",
        connect_timeout_seconds=2, docker_engine=engine, container_name="orders-db",
    )  # fmt: skip
    services.collection_schedules_ensure()
    # The engine is not collected (its collection is off): only a live ping finds it gone.
    CollectionSchedule.objects.filter(system=engine).update(enabled=False)
    return engine, database


def test_a_child_waits_for_its_dead_host_then_goes_alone(database_on_dead_engine):
    _, database = database_on_dead_engine
    services.collection_run_due()
    state = AlertState.objects.get(system=database, rule__metric="up")
    assert state.status == AlertStatus.FIRING and not state.delivered
    assert not Alert.objects.exists() and not Incident.objects.exists()
    assert AuditRecord.objects.filter(message__contains="held while its host").count() == 1
    services.alerts_redeliver()  # a later round: the host's alert has still not fired
    assert not Alert.objects.exists()
    # Past the hold the engine's alert never came (its rule off, say): page for the child.
    AlertState.objects.filter(pk=state.pk).update(
        since=state.since - dt.timedelta(seconds=HOLD_FOR_HOST_SECONDS + 1)
    )
    services.alerts_redeliver()
    incident = Incident.objects.get()
    assert incident.alert_fingerprint == state.fingerprint
    assert Alert.objects.get().runs_on_id == database.docker_engine_id
