"""Two-person approval through the API and the approval page: an API request that needs
approval answers with status "awaiting" (break-glass during a SEV1 runs it at once); on the
page the requester is told a second person must decide, and a decision without a reason or
by the requester changes nothing."""

import pytest
from django.contrib.auth.models import Group

from incidents.services import incident_open
from opsportal.approvals.models import ApprovalStatus
from opsportal.approvals.services import approval_for
from opsportal.defaults import load_defaults
from opsportal.operations.models import Operation, OperationStatus
from tests.api.conftest import ApiClient, make_user
from tests.signin import TwoFactorClient

pytestmark = pytest.mark.django_db


def signed_in_client(user) -> TwoFactorClient:
    client = TwoFactorClient()
    client.force_login(user)
    return client


@pytest.fixture
def setup(db, postgres_target):
    load_defaults()
    from opsportal.api.services import api_token_create

    dana = make_user("Database admins", username="dana")
    _, plain = api_token_create(user=dana, name="pipeline", scope="read_write", actor=dana)
    incident = incident_open(
        title="Too many connections",
        severity="sev2",
        category="database",
        reporter=dana,
        affected_systems=[postgres_target],
    )
    return ApiClient(plain), dana, incident


def test_an_api_request_needing_approval_answers_awaiting(setup, postgres_target):
    api, _, incident = setup
    url = f"/api/v1/incidents/{incident.pk}/operations/"
    body = {"kind": "db_terminate_idle", "target": postgres_target.name, "reason": "pool leak"}
    answer = api.post(url, body)
    assert answer.status_code == 201, answer.content
    assert answer.json()["status"] == "awaiting"
    read = api.get(f"/api/v1/operations/{answer.json()['id']}/").json()
    assert read["status"] == "awaiting"
    Operation.objects.filter(pk=read["id"]).update(status=OperationStatus.CANCELLED)

    # Break-glass is refused on a SEV2 (nothing recorded), and runs at once on a SEV1.
    refused = api.post(url, {**body, "break_glass_reason": "checkout down"})
    assert refused.status_code >= 400 and "SEV1" in refused.content.decode()
    assert Operation.objects.count() == 1
    incident.severity = "sev1"
    incident.save(update_fields=["severity"])
    ran = api.post(url, {**body, "break_glass_reason": "checkout down"})
    assert ran.status_code == 201 and ran.json()["status"] == "queued", ran.content


def test_the_approval_page_refuses_the_requester_and_a_decision_without_reason(setup):
    api, dana, incident = setup
    body = {"kind": "db_terminate_idle", "target": incident.affected_systems.get().name}
    answer = api.post(f"/api/v1/incidents/{incident.pk}/operations/", {**body, "reason": "x"})
    approval = approval_for(Operation.objects.get(pk=answer.json()["id"]))
    page_url = f"/admin/approvals/approvalrequest/{approval.pk}/change/"
    decide_url = f"/admin/approvals/approvalrequest/{approval.pk}/decide/"

    own = signed_in_client(dana)
    assert "a second person must approve or reject it" in own.get(page_url).content.decode()
    refused = own.post(decide_url, {"decision": "approve", "reason": "mine"}, follow=True)
    assert "You asked for this yourself" in refused.content.decode()

    dev = make_user("Database admins", username="dev")
    other = signed_in_client(dev)
    assert 'id="decide-form"' in other.get(page_url).content.decode()
    blank = other.post(decide_url, {"decision": "approve", "reason": " "}, follow=True)
    assert "Give a reason to approve" in blank.content.decode()
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING

    devops = make_user("DevOps", username="devo")
    assert signed_in_client(devops).post(decide_url, {"reason": "x"}).status_code == 403
    assert (
        Group.objects.get(name="Database admins")
        .permissions.filter(codename="approve_restores")
        .exists()
    )


def test_load_defaults_requires_approval_for_restores_and_terminate_all_only(setup):
    from opsportal.approvals.models import ApprovalPolicy
    from opsportal.operations.kinds import KINDS

    required = dict(
        ApprovalPolicy.objects.filter(required=True).values_list("subject", "exempt_when_narrowed")
    )
    # "Terminate all connections": terminating idle connections unless narrowed to one
    # application or user; every other changing kind runs at once until an admin says so.
    assert required == {"restore": False, "operation:db_terminate_idle": True}
    changing = {f"operation:{kind}" for kind, spec in KINDS.items() if spec.changing}
    not_required = set(
        ApprovalPolicy.objects.filter(required=False).values_list("subject", flat=True)
    )
    assert not_required == changing - {"operation:db_terminate_idle"}
    assert set(ApprovalPolicy.objects.values_list("expires_after_minutes", flat=True)) == {30}
    load_defaults()  # loading again changes nothing an admin may have set
    assert ApprovalPolicy.objects.filter(required=True).count() == 2
