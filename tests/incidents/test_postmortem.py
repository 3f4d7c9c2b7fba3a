"""Postmortems that write themselves (issue 14): the post-incident review draft of a
resolved incident, as Markdown (parsed back with an independent CommonMark parser), as a
download, as a printable page, and committed to the configuration Git repository."""

import datetime as dt
import subprocess

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from markdown_it import MarkdownIt

from backups.services import configuration_backup
from incidents.models import ActionItem, Incident, IncidentStep, TimelineEvent, TimelineKind
from incidents.services import (
    IncidentRefused,
    alert_receive,
    incident_acknowledge,
    incident_add_note,
    incident_mitigate,
    incident_open,
    incident_postmortem_draft,
    incident_postmortem_file,
    incident_resolve,
    incident_step_done,
    incident_step_run,
)
from opsportal.access import groups_load_defaults
from opsportal.audit.models import AuditOutcome, AuditRecord
from opsportal.operations.models import OperationStatus
from opsportal.operations.tasks import execute_operation

UTC = dt.UTC
HOSTILE_NOTE = "# not a heading | with a pipe and ```fence``` and <script>alert(1)</script>"
HOSTILE_STEP_NOTE = "- not a list item | cell"
LEAKED = "password=CANARY-PW-1"
T0 = dt.datetime(2026, 11, 2, 10, 0, 0, tzinfo=UTC)


def staff_in(role: str):
    user = get_user_model().objects.create_user(
        role.lower().replace(" ", "-"), password="role-pass-123", is_staff=True
    )
    user.groups.add(Group.objects.get(name=role))
    return user


def git(repo, *args) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def resolved_incident(engineer, postgres_target, target_database_dsn) -> Incident:
    """A database incident as it happens: an alert opens it and pages, a responder
    acknowledges, runs a runbook step on the real target database (output on the timeline),
    ticks a manual step, adds notes, mitigates and resolves; the review is written with an
    action item. The milestones are then set to known times for the timing assertions."""
    alert = alert_receive(
        fingerprint="orders-db-connections",
        status="firing",
        title="Orders | DB: too many connections",
        severity="sev2",
        category="database",
        systems=[postgres_target],
        runbook_name="Database Connection Issues",
        evidence="connections: 100 of 100",
    )
    incident = alert.incident
    incident_acknowledge(incident=incident, actor=engineer, note="on it")
    step = IncidentStep.objects.get(incident=incident, text="Check connection pool status")
    operation = incident_step_run(step=step, actor=engineer, target=postgres_target)
    # A client whose connection string leaked into its application name: the operation's
    # output names it, masked.
    with psycopg.connect(target_database_dsn, application_name=f"orders-api {LEAKED}"):
        execute_operation.apply(args=[operation.pk])
    operation.refresh_from_db()
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    manual = IncidentStep.objects.get(incident=incident, text="Connection timeouts")
    incident_step_done(step=manual, actor=engineer, note=HOSTILE_STEP_NOTE)
    incident_add_note(incident=incident, actor=engineer, text=HOSTILE_NOTE)
    incident_add_note(incident=incident, actor=engineer, text="pool size raised to 200")
    incident_mitigate(incident=incident, actor=engineer, note="connections back to normal")
    incident_resolve(incident=incident, actor=engineer, resolution="Raised the pool size.")
    Incident.objects.filter(pk=incident.pk).update(
        summary="The orders database refused connections.\n# Not a heading either",
        impact="Checkout failed for ~30 min | 12% of orders.",
        review_what_happened="A deploy doubled the workers.",
        review_root_cause="Pool size fixed at `100`.",
        detected_at=T0,
        acknowledged_at=T0 + dt.timedelta(minutes=4, seconds=10),
        mitigated_at=T0 + dt.timedelta(minutes=30),
        resolved_at=T0 + dt.timedelta(hours=1, minutes=2, seconds=5),
    )
    ActionItem.objects.create(
        incident=incident,
        description="Alert on pool use above 80% | before it fills",
        owner=engineer,
        due_date=dt.date(2026, 11, 20),
    )
    incident.refresh_from_db()
    return incident


def parsed(markdown: str):
    return MarkdownIt("commonmark").enable("table").parse(markdown)


def headings(tokens) -> list[tuple[str, str]]:
    return [
        (token.tag, "".join(child.content for child in tokens[i + 1].children))
        for i, token in enumerate(tokens)
        if token.type == "heading_open"
    ]


@pytest.fixture
def world(teams, engineer, runbooks, postgres_target, target_database_dsn):
    groups_load_defaults()
    return resolved_incident(engineer, postgres_target, target_database_dsn)


def test_the_draft_has_every_section_with_the_right_timings_and_stays_one_document(
    world, engineer, postgres_target
):
    incident = world
    text = incident_postmortem_draft(incident=incident)
    tokens = parsed(text)

    # The structure is exactly the draft's: no note, title or summary line became a heading.
    assert headings(tokens) == [
        ("h1", f"Post-incident review: incident #{incident.pk}: Orders | DB: too many connections"),
        ("h2", "Summary"),
        ("h3", "Symptoms"),
        ("h2", "Impact"),
        ("h2", "Timings"),
        ("h2", "Timeline"),
        ("h3", "Operation results"),
        ("h3", "Alerts"),
        ("h2", "Runbook steps"),
        ("h3", "Done"),
        ("h3", "Skipped"),
        ("h2", "Resolution"),
        ("h2", "Review"),
        ("h3", "What happened"),
        ("h3", "Root cause"),
        ("h3", "Action items"),
    ]
    # Every table row has as many cells as its header: no pipe split a cell.
    rows, cells = [], 0
    for token in tokens:
        if token.type == "tr_open":
            cells = 0
        elif token.type in ("th_open", "td_open"):
            cells += 1
        elif token.type == "tr_close":
            rows.append(cells)
    assert rows and len(rows) > 20
    inline = {t.content for t in tokens if t.type == "inline"}
    # The hostile note is one cell's text, read back exactly as typed.
    rendered = MarkdownIt("commonmark").enable("table").render(text)
    assert "<td>" + HOSTILE_NOTE.replace("<", "&lt;").replace(">", "&gt;") + "</td>" in rendered
    assert "<script>" not in rendered and "<h1>not a heading" not in rendered
    assert f"<td>{HOSTILE_STEP_NOTE}</td>" in rendered
    assert "# Not a heading either" in rendered  # the summary's second line, as text
    assert "<code>100</code>" not in rendered and "Pool size fixed at `100`." in rendered
    # Timings in UTC ISO and elapsed times as a review reads them.
    assert "<td>Detected</td>\n<td>2026-11-02T10:00:00Z</td>" in rendered
    assert "<td>Acknowledged</td>\n<td>2026-11-02T10:04:10Z</td>" in rendered
    assert "<td>Mitigated</td>\n<td>2026-11-02T10:30:00Z</td>" in rendered
    assert "<td>Resolved</td>\n<td>2026-11-02T11:02:05Z</td>" in rendered
    assert "Time to acknowledge: 4 min 10 s" in inline
    assert "Time to mitigate: 30 min 0 s" in inline
    assert "Time to resolve: 1 h 2 min" in inline
    # The timeline: the alert, the pages, the operation with its key result, the notes.
    timeline = list(TimelineEvent.objects.filter(incident=incident).order_by("at", "id"))
    kinds = [event.kind for event in timeline]
    for kind in (TimelineKind.ALERT, TimelineKind.NOTIFICATION, TimelineKind.OPERATION):
        assert kind in kinds
    assert (
        f"{kinds.count(TimelineKind.ALERT)} alerts, "
        f"{kinds.count(TimelineKind.NOTIFICATION)} notifications, "
        f"{kinds.count(TimelineKind.OPERATION)} operation events, 2 notes, "
        f"{len(timeline)} events in all." in inline
    )
    finished = next(e for e in timeline if e.kind == TimelineKind.OPERATION and e.output)
    fences = [t for t in tokens if t.type == "fence"]
    assert len(fences) == 1 and fences[0].info == "text"
    assert fences[0].content.splitlines()[0] == finished.output.splitlines()[0]
    assert "succeeded" in finished.message
    # Runbook steps: the two done (with their notes), the rest skipped.
    done = IncidentStep.objects.filter(incident=incident, done=True)
    skipped = IncidentStep.objects.filter(incident=incident, done=False)
    assert done.count() == 2 and skipped.count() >= 4
    done_section = text.split("### Done", 1)[1].split("### Skipped", 1)[0]
    skipped_section = text.split("### Skipped", 1)[1].split("## Resolution", 1)[0]
    for step in done:
        assert step.text in done_section.replace("\\", "")
    for step in skipped:
        assert step.text in skipped_section.replace("\\", "")
        assert step.text not in done_section.replace("\\", "")
    assert "Operation #" in done_section or "operation #" in done_section
    # The review and its action item.
    assert "A deploy doubled the workers." in inline
    assert "<td>Alert on pool use above 80% | before it fills</td>" in rendered
    assert "<td>2026-11-20</td>" in rendered
    # The operation's output as it was stored: masked.
    assert "orders-api password=********" in fences[0].content
    assert "CANARY-PW-1" not in text
    assert "| Affected systems | test-postgres |" in text


def test_the_draft_is_read_in_a_fixed_number_of_queries(world, engineer):
    incident = world
    with CaptureQueriesContext(connection) as few:
        incident_postmortem_draft(incident=incident)
    TimelineEvent.objects.bulk_create(
        TimelineEvent(
            incident=incident,
            at=T0 + dt.timedelta(seconds=n),
            kind=TimelineKind.NOTE,
            actor=engineer,
            message=f"note {n}",
        )
        for n in range(300)
    )
    with CaptureQueriesContext(connection) as many:
        text = incident_postmortem_draft(incident=incident)
    assert "note 299" in text
    assert len(many) == len(few) <= 8


def test_an_unresolved_incident_is_refused_with_a_clear_message(teams, engineer, client):
    incident = incident_open(
        title="still burning", severity="sev3", category="api", reporter=engineer
    )
    with pytest.raises(IncidentRefused, match=r"is open: its post-incident review draft"):
        incident_postmortem_draft(incident=incident)
    client.force_login(engineer)
    page = client.get(reverse("admin:incidents_incident_change", args=[incident.pk]))
    assert b'id="incident-postmortem"' not in page.content
    for name in ("download", "print"):
        response = client.get(
            reverse(f"admin:incidents_incident_postmortem_{name}", args=[incident.pk])
        )
        assert response.status_code == 302
        shown = [str(m) for m in get_messages(response.wsgi_request)]
        assert shown[-1] == (
            f"Incident #{incident.pk} is open: its post-incident review draft is written once "
            "it is resolved."
        )
    response = client.post(
        reverse("admin:incidents_incident_postmortem_commit", args=[incident.pk])
    )
    assert response.status_code == 302
    assert "is open" in str(list(get_messages(response.wsgi_request))[-1])


def test_download_and_printable_page_for_a_viewer(world, client):
    incident = world
    viewer = staff_in("Viewers")
    client.force_login(viewer)
    page = client.get(reverse("admin:incidents_incident_change", args=[incident.pk])).content
    assert b'id="postmortem-download"' in page and b'id="postmortem-print"' in page
    # Viewers may read the review, not commit it.
    assert b'id="postmortem-commit"' not in page and b"postmortem-not-set-up" not in page

    response = client.get(
        reverse("admin:incidents_incident_postmortem_download", args=[incident.pk])
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="postmortem-{incident.pk}-orders-db-too-many-connections.md"'
    )
    assert response.content.decode() == incident_postmortem_draft(incident=incident)

    response = client.get(reverse("admin:incidents_incident_postmortem_print", args=[incident.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "@media print" in html and 'id="print-page"' in html
    for section in ("Summary", "Impact", "Timings", "Timeline", "Runbook steps", "Review"):
        assert f"<h2>{section}</h2>" in html
    assert "2026-11-02T11:02:05Z" in html and "Time to resolve: 1 h 2 min" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "CANARY-PW-1" not in html and "orders-api password=********" in html
    # Only the page's own nonce'd script runs (the CSP allows no other inline script).
    assert html.count("<script") == 1 and 'nonce="' in html.split("<script", 1)[1][:60]
    assert "Alert on pool use above 80% | before it fills" in html


def test_commit_to_the_configuration_repository(world, engineer, client, settings, tmp_path):
    incident = world
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    settings.CONFIG_BACKUP_REPO = tmp_path / "config-repo"
    settings.CONFIG_BACKUP_REMOTE = str(remote)
    configuration_backup()  # the repository as the configuration backup sets it up
    client.force_login(engineer)
    page = client.get(reverse("admin:incidents_incident_change", args=[incident.pk])).content
    assert b'id="postmortem-commit"' in page

    url = reverse("admin:incidents_incident_postmortem_commit", args=[incident.pk])
    assert client.get(url).status_code == 405
    response = client.post(url)
    assert response.status_code == 302
    path = f"postmortems/{incident.pk}-orders-db-too-many-connections.md"
    head = git(settings.CONFIG_BACKUP_REPO, "rev-parse", "HEAD")
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        f"Post-incident review draft committed as {path} (commit {head[:12]}, pushed)."
    ]
    assert git(remote, "show", f"main:{path}") + "\n" == incident_postmortem_draft(
        incident=incident
    )
    assert git(remote, "log", "-1", "--format=%an|%s", "main") == (
        f"erin|Post-incident review draft: incident #{incident.pk} "
        "Orders | DB: too many connections"
    )
    assert git(remote, "show", "--name-only", "--format=", "main") == path
    record = AuditRecord.objects.filter(
        object_type="incidents.incident", object_id=str(incident.pk), message__contains=path
    ).get()
    assert record.actor_id == engineer.pk and record.outcome == AuditOutcome.SUCCESS

    # The same draft again: no new commit. A new title: the file is renamed in one commit.
    response = client.post(url)
    assert "nothing new was committed" in str(list(get_messages(response.wsgi_request))[-1])
    assert git(remote, "rev-parse", "main") == head
    Incident.objects.filter(pk=incident.pk).update(title="Orders DB: pool exhausted")
    client.post(url)
    renamed = f"postmortems/{incident.pk}-orders-db-pool-exhausted.md"
    assert git(remote, "ls-tree", "-r", "--name-only", "main", "postmortems/") == renamed
    # The configuration export beside it is left alone.
    assert "people/team.json" in git(remote, "ls-tree", "-r", "--name-only", "main")


def test_commit_refused_when_not_set_up_not_allowed_or_the_push_fails(
    world, engineer, client, settings, tmp_path
):
    incident = world
    settings.CONFIG_BACKUP_REPO = tmp_path / "no-repo-yet"
    client.force_login(engineer)
    page = client.get(reverse("admin:incidents_incident_change", args=[incident.pk])).content
    assert b'id="postmortem-commit"' not in page and b'id="postmortem-not-set-up"' in page
    response = client.post(
        reverse("admin:incidents_incident_postmortem_commit", args=[incident.pk])
    )
    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        f"The configuration Git repository is not set up: there is no repository at "
        f"{tmp_path / 'no-repo-yet'} (CONFIG_BACKUP_REPO) yet; the first configuration backup "
        "creates it. Nothing was committed; download the draft instead."
    ]
    assert not (tmp_path / "no-repo-yet").exists()

    # Set up, but its remote is gone: the refusal quotes git, and it is audited.
    settings.CONFIG_BACKUP_REPO = tmp_path / "config-repo"
    configuration_backup()
    # Committing needs the permission to edit the review, in the service too.
    with pytest.raises(PermissionDenied, match=r"'incidents\.change_incident'"):
        incident_postmortem_file(incident=incident, actor=staff_in("Viewers"))
    assert not (tmp_path / "config-repo" / "postmortems").exists()
    settings.CONFIG_BACKUP_REMOTE = str(tmp_path / "gone.git")
    response = client.post(
        reverse("admin:incidents_incident_postmortem_commit", args=[incident.pk])
    )
    shown = str(list(get_messages(response.wsgi_request))[-1])
    assert shown.startswith(f"Could not commit postmortems/{incident.pk}-orders-db-too-many")
    assert "git push failed" in shown
    record = AuditRecord.objects.filter(
        object_type="incidents.incident", outcome=AuditOutcome.FAILURE
    ).get()
    assert record.message.startswith("Post-incident review draft not committed: Could not")
