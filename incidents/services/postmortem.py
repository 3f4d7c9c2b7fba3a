"""Postmortems that write themselves: from a resolved incident, the post-incident review
draft (summary, impact, timings, the timeline, the runbook steps done and skipped, the
review and its action items) as Markdown, as a printable page, and committed to the
configuration Git repository under `postmortems/` when that is set up.

What the draft shows is what everyone who may view the incident sees on its page: the
timeline's own messages and (bounded) outputs, which the operations masked when they were
stored. Never the preserved evidence, the alert rows' evidence field (the part an alert put
into the incident's symptoms is on the incident page for everyone, and in the draft) nor an
operation's parameters.

Everything a person typed (titles, notes, review text) is escaped so it cannot change the
document's structure: a note starting with '#' stays a line of text, not a heading; a pipe
stays inside its table cell; backticks in an output cannot close its code block.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from django.utils.text import slugify

from incidents.durations import elapsed_text
from incidents.models import Incident, Source, Status, TimelineKind
from incidents.selectors import PostmortemRecord, incident_postmortem_record
from incidents.services._common import IncidentRefused, _audit
from opsportal.actors import actor_require
from opsportal.audit.models import AuditOutcome
from opsportal.operations.masking import mask_credentials

POSTMORTEM_DIRECTORY = "postmortems"
# An operation's output in the draft: its first lines, as on the incident page's summary;
# the whole output stays on the incident page.
OUTPUT_EXCERPT_LINES = 20
OUTPUT_EXCERPT_CHARS = 2_000
POSTMORTEM_READY = (Status.RESOLVED, Status.CLOSED)
FILE_PERMISSION = "incidents.change_incident"


# --- what the draft says ---------------------------------------------------------------


@dataclass
class OperationResult:
    at: str
    message: str
    output: str


@dataclass
class PostmortemDraft:
    """The draft's content, already in words (UTC times, elapsed times, names): the
    Markdown and the printable page are two renderings of this one object."""

    number: int
    title: str
    facts: list[tuple[str, str]]
    summary: str
    symptoms: str
    impact: str
    resolution: str
    what_happened: str
    root_cause: str
    timings: list[tuple[str, str]]
    durations: list[tuple[str, str]]
    counts: list[tuple[str, int]]
    # (time, kind, who, what)
    timeline: list[tuple[str, str, str, str]]
    operation_results: list[OperationResult]
    # (received, status, severity, title, source)
    alerts: list[tuple[str, str, str, str, str]]
    # (phase, step, done at, by, note / operation)
    steps_done: list[tuple[str, str, str, str, str]]
    # (phase, step, system)
    steps_skipped: list[tuple[str, str, str]]
    # (description, owner, due, done)
    action_items: list[tuple[str, str, str, str]] = field(default_factory=list)


def utc_text(moment: dt.datetime | None) -> str:
    """UTC ISO 8601 to the second (2026-11-29T23:41:05Z), or '—'."""
    if moment is None:
        return "—"
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _person(user) -> str:
    if user is None:
        return "—"
    return user.get_full_name() or user.get_username()


def _excerpt(output: str) -> str:
    lines = output.splitlines()
    text = "\n".join(lines[:OUTPUT_EXCERPT_LINES])[:OUTPUT_EXCERPT_CHARS]
    if len(lines) > OUTPUT_EXCERPT_LINES or len(text) < len("\n".join(lines)):
        text += "\n… (the whole output is on the incident page)"
    # The operation masked its output when it was stored; masking again costs nothing and
    # keeps a credential out of a document that leaves the portal.
    return mask_credentials(text)


def postmortem_refuse_unless_resolved(incident: Incident) -> None:
    if incident.status not in POSTMORTEM_READY:
        raise IncidentRefused(
            f"Incident #{incident.pk} is {incident.get_status_display().lower()}: its "
            "post-incident review draft is written once it is resolved."
        )


def incident_postmortem(*, incident: Incident) -> PostmortemDraft:
    """The draft's content for a resolved or closed incident (IncidentRefused otherwise),
    read in a fixed number of queries however long its timeline."""
    record: PostmortemRecord = incident_postmortem_record(incident_id=incident.pk)
    incident = record.incident
    postmortem_refuse_unless_resolved(incident)
    kinds = dict(TimelineKind.choices)
    sources = dict(Source.choices)
    timeline = []
    results = []
    counted = {kind: 0 for kind in TimelineKind.values}
    for event in record.timeline:
        counted[event.kind] = counted.get(event.kind, 0) + 1
        who = _person(event.actor) if event.actor_id else sources.get(event.source, event.source)
        timeline.append((utc_text(event.at), kinds.get(event.kind, event.kind), who, event.message))
        if event.kind == TimelineKind.OPERATION and event.output:
            results.append(
                OperationResult(utc_text(event.at), event.message, _excerpt(event.output))
            )
    steps_done, steps_skipped = [], []
    for step in record.steps:
        phase = step.get_phase_display()
        if step.done:
            detail = step.note or (
                f"operation #{step.last_operation_id}" if step.last_operation_id else ""
            )
            steps_done.append(
                (phase, step.text, utc_text(step.done_at), _person(step.done_by), detail)
            )
        else:
            steps_skipped.append((phase, step.text, step.target.name if step.target else "—"))
    mitigated = incident.mitigated_at
    return PostmortemDraft(
        number=incident.pk,
        title=incident.title,
        facts=[
            ("Severity", incident.severity_label),
            ("Category", incident.get_category_display()),
            ("Status", incident.get_status_display()),
            ("Team", incident.team.name if incident.team else "—"),
            ("Incident commander", _person(incident.commander)),
            ("Reported by", _person(incident.reporter)),
            ("Affected systems", ", ".join(record.affected_systems) or "—"),
            ("Runbook", incident.runbook.name if incident.runbook else "—"),
        ],
        summary=incident.summary,
        symptoms=incident.symptoms,
        impact=incident.impact,
        resolution=incident.resolution,
        what_happened=incident.review_what_happened,
        root_cause=incident.review_root_cause,
        timings=[
            ("Detected", utc_text(incident.detected_at)),
            ("Acknowledged", utc_text(incident.acknowledged_at)),
            ("Mitigated", utc_text(mitigated)),
            ("Resolved", utc_text(incident.resolved_at)),
            ("Closed", utc_text(incident.closed_at)),
        ],
        durations=[
            ("Time to acknowledge", elapsed_text(incident.time_to_acknowledge)),
            (
                "Time to mitigate",
                elapsed_text(mitigated - incident.detected_at if mitigated else None),
            ),
            ("Time to resolve", elapsed_text(incident.time_to_resolve)),
        ],
        counts=[
            ("alerts", counted[TimelineKind.ALERT]),
            ("notifications", counted[TimelineKind.NOTIFICATION]),
            ("operation events", counted[TimelineKind.OPERATION]),
            ("notes", counted[TimelineKind.NOTE]),
            ("events in all", len(record.timeline)),
        ],
        timeline=timeline,
        operation_results=results,
        alerts=[
            (
                utc_text(alert.received_at),
                alert.get_status_display(),
                alert.get_severity_display().split(" ")[0],
                alert.title,
                alert.source,
            )
            for alert in record.alerts
        ],
        steps_done=steps_done,
        steps_skipped=steps_skipped,
        action_items=[
            (item.description, _person(item.owner), item.due_date.isoformat(), _yes(item.done))
            for item in record.action_items
        ],
    )


def _yes(value: bool) -> str:
    return "yes" if value else "no"


# --- Markdown --------------------------------------------------------------------------

# Characters that start inline markup anywhere in a line (CommonMark and GitHub's tables
# and strikethrough); each is backslash-escaped, which CommonMark allows for any ASCII
# punctuation.
_INLINE = re.compile(r"([\\`*_\[\]<>|~])")
_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
# What makes a line a heading, list item, quote, thematic break or setext underline when
# it starts the line.
_LINE_START = re.compile(r"^(#|=|-|\+|(\d{1,9})([.)]))")
# A run of '#' at the end would be read as a heading's closing sequence and dropped.
_TRAILING_HASHES = re.compile(r"(#+)$")


def md_inline(text: str) -> str:
    """One line of user text, safe anywhere inline (a table cell, a list item, a heading):
    whitespace and line breaks collapsed, markup characters escaped."""
    text = " ".join(str(text).split())
    text = _ENTITY.sub(r"\\&", _INLINE.sub(r"\\\1", text))
    text = _TRAILING_HASHES.sub(r"\\\1", text)
    return _LINE_START.sub(_escape_line_start, text)


def _escape_line_start(match: re.Match) -> str:
    if match.group(2):  # "1." or "1)": an ordered list item
        return f"{match.group(2)}\\{match.group(3)}"
    return f"\\{match.group(1)}"


def md_block(text: str, *, empty: str = "_Not written yet._") -> str:
    """Multi-line user text as paragraphs: its line breaks kept (as hard breaks), nothing
    in it read as markup."""
    paragraphs, lines = [], []
    for raw in [*(text or "").splitlines(), ""]:
        if raw.strip():
            lines.append(md_inline(raw))
        elif lines:
            paragraphs.append("\\\n".join(lines))
            lines = []
    return "\n\n".join(paragraphs) if paragraphs else empty


def md_code(text: str) -> str:
    """A fenced code block longer than any run of backticks inside it, so nothing in the
    text can close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def md_table(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(md_inline(cell) or " " for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def postmortem_markdown(draft: PostmortemDraft) -> str:
    out = [
        f"# Post-incident review: incident #{draft.number}: {md_inline(draft.title)}",
        "",
        f"> Draft written by OpsPortal from incident #{draft.number}. Review and complete it "
        "before it is shared.",
        "",
        md_table(("Field", "Value"), draft.facts),
        "",
        "## Summary",
        "",
        md_block(draft.summary),
        "",
        "### Symptoms",
        "",
        md_block(draft.symptoms, empty="_None recorded._"),
        "",
        "## Impact",
        "",
        md_block(draft.impact),
        "",
        "## Timings",
        "",
        md_table(("Milestone", "Time (UTC)"), draft.timings),
        "",
        *[f"- {label}: {value}" for label, value in draft.durations],
        "",
        "## Timeline",
        "",
        ", ".join(f"{n} {label}" for label, n in draft.counts) + ".",
        "",
        md_table(("Time (UTC)", "Event", "Who", "What"), draft.timeline)
        if draft.timeline
        else "_No events._",
        "",
    ]
    if draft.operation_results:
        out += ["### Operation results", ""]
        for result in draft.operation_results:
            out += [f"- {result.at}: {md_inline(result.message)}", "", md_code(result.output), ""]
    out += [
        "### Alerts",
        "",
        md_table(("Received (UTC)", "Status", "Severity", "Alert", "Source"), draft.alerts)
        if draft.alerts
        else "_No alerts._",
        "",
        "## Runbook steps",
        "",
        "### Done",
        "",
        md_table(("Phase", "Step", "Done at (UTC)", "By", "Note"), draft.steps_done)
        if draft.steps_done
        else "_None._",
        "",
        "### Skipped",
        "",
        md_table(("Phase", "Step", "System"), draft.steps_skipped)
        if draft.steps_skipped
        else "_None: every step was done._",
        "",
        "## Resolution",
        "",
        md_block(draft.resolution),
        "",
        "## Review",
        "",
        "### What happened",
        "",
        md_block(draft.what_happened),
        "",
        "### Root cause",
        "",
        md_block(draft.root_cause),
        "",
        "### Action items",
        "",
        md_table(("Action", "Owner", "Due", "Done"), draft.action_items)
        if draft.action_items
        else "_None yet._",
        "",
    ]
    return "\n".join(out)


def incident_postmortem_draft(*, incident: Incident) -> str:
    """The post-incident review draft of a resolved or closed incident, as Markdown
    (IncidentRefused for an incident still active)."""
    return postmortem_markdown(incident_postmortem(incident=incident))


# --- files -----------------------------------------------------------------------------


def postmortem_file_name(incident: Incident) -> str:
    """<number>-<slug of the title>.md: ASCII letters, digits and dashes only."""
    slug = slugify(incident.title)[:60].strip("-_") or "incident"
    return f"{incident.pk}-{slug}.md"


def incident_postmortem_file(*, incident: Incident, actor) -> object:
    """Commit the draft to the configuration Git repository as
    postmortems/<number>-<slug>.md (replacing the draft of the same incident under an
    earlier title) and push it when a remote is configured; the same draft again makes no
    commit. Needs the permission to edit the incident (its review). Each commit, and each
    one the repository refused, is audited; IncidentRefused says why nothing was committed.
    Returns the FiledDocument."""
    from opsportal.documents import DocumentStoreUnavailable, document_store

    actor_require(actor, FILE_PERMISSION, doing="commit an incident's post-incident review")
    text = incident_postmortem_draft(incident=incident)
    store = document_store()
    if store is None or not store.is_set_up():
        reason = (
            store.not_set_up_reason()
            if store is not None
            else "No configuration repository is configured in this portal."
        )
        raise IncidentRefused(f"{reason} Nothing was committed; download the draft instead.")
    path = f"{POSTMORTEM_DIRECTORY}/{postmortem_file_name(incident)}"
    try:
        filed = store.file(
            path=path,
            text=text,
            message=f"Post-incident review draft: incident #{incident.pk} {incident.title}"[:200],
            actor=actor,
            replaces=f"{POSTMORTEM_DIRECTORY}/{incident.pk}-*.md",
        )
    except DocumentStoreUnavailable as exc:
        _audit(
            incident,
            f"Post-incident review draft not committed: {exc}",
            actor,
            outcome=AuditOutcome.FAILURE,
        )
        raise IncidentRefused(str(exc)) from exc
    _audit(
        incident,
        (
            f"Post-incident review draft committed as {filed.path} "
            f"(commit {filed.revision[:12]}{', pushed' if filed.pushed else ''})"
            if filed.changed
            else f"Post-incident review draft unchanged at {filed.path}; nothing committed"
        ),
        actor,
    )
    return filed
