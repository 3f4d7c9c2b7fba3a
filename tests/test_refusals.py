"""One base exception for "the service refused, here is why" (opsportal/refusals.py)."""

from __future__ import annotations

import pickle

import pytest

from backups.services import BackupBusy
from incidents.services import IncidentRefused
from maintenance.services import MaintenanceError
from opsportal.accounts.services import TwoFactorRefused
from opsportal.operations.services import EvidenceUnavailable, OperationRefused
from opsportal.refusals import ServiceRefused


@pytest.mark.parametrize(
    "refusal_class",
    [
        OperationRefused,
        EvidenceUnavailable,
        IncidentRefused,
        MaintenanceError,
        BackupBusy,
        TwoFactorRefused,
    ],
)
def test_every_domain_refusal_is_a_service_refusal_that_carries_its_message(refusal_class):
    refusal = refusal_class("Finish the running step first.")
    assert isinstance(refusal, ServiceRefused)
    assert refusal.message == str(refusal) == "Finish the running step first."
    # A worker may hand one back through the broker: it survives pickling with its message.
    again = pickle.loads(pickle.dumps(refusal))  # noqa: S301 (bytes this test just made)
    assert type(again) is refusal_class
    assert again.message == "Finish the running step first."


def test_an_operation_refusal_still_names_the_conflicting_operation():
    refusal = OperationRefused("Operation #7 is already running.", conflicting=None)
    assert refusal.message == "Operation #7 is already running."
    assert refusal.conflicting is None
