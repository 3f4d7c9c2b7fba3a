"""The role matrix's table: who may reach every URL the portal serves (tests/test_role_matrix.py
asks; this module declares). A new URL needs a row here."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

ANONYMOUS = "anonymous"
VIEWERS = "Viewers"
ON_CALL = "On-call engineers"
DBA = "Database admins"
DEVOPS = "DevOps"
SECURITY = "Security team"
SUPERUSER = "superuser"
GROUPS = (VIEWERS, ON_CALL, DBA, DEVOPS, SECURITY)
ROLES = (ANONYMOUS, *GROUPS, SUPERUSER)

# Each test runs in its own savepoint inside the module's transaction (see `world`).
pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Access:
    """Who may use one URL pattern.

    get/post: the roles that may; every other role is refused. post=None: the view changes
    nothing, so it is not POSTed. ok/post_ok: the status an allowed request answers with
    (a tuple where several are right: a page that reports a failing check says 503).
    refused: how the view refuses: 403, or "message" for views that redirect back with a
    "You need the permission …" error (the service refuses, the view reports it).
    login: False for views outside the admin login (health, feeds), which anonymous
    visitors reach like anyone else. query: added to the GET; post_data: the minimal POST
    ("<app.model>" stands for the world's object of that model).
    """

    get: frozenset[str] | str  # or POST_ONLY
    post: frozenset[str] | None = None
    ok: int | tuple[int, ...] = 200
    post_ok: int | tuple[int, ...] = (200, 302)
    refused: int | str = 403
    login: bool = True
    query: str = ""
    post_data: dict = field(default_factory=dict)
    # A model's list: the admin actions (run from the list with POST) and who is offered each.
    # Django runs only an action it offers, so what is offered is what may be run.
    actions: dict[str, frozenset[str]] | None = None


def roles(*names: str) -> frozenset[str]:
    return frozenset(names)


NOBODY = roles()
STAFF = roles(*GROUPS, SUPERUSER)
EVERYONE = roles(*ROLES)
ONLY_SUPERUSER = roles(SUPERUSER)
# Views that answer only POST: a GET is 405 for every signed-in user.
POST_ONLY = "POST only"
LOGIN = "login"
MESSAGE = "message"


# --- the table -----------------------------------------------------------------------------

# Short names for the table's rows.
VW, OC, DEV, SEC, SU = VIEWERS, ON_CALL, DEVOPS, SECURITY, SUPERUSER
# Every role but Viewers works incidents and may test a system's connection.
RESPONDERS = roles(OC, DBA, DEV, SEC, SU)


def model_pages(
    label: str,
    *,
    view: frozenset[str],
    add: frozenset[str] = ONLY_SUPERUSER,
    change: frozenset[str] = ONLY_SUPERUSER,
    delete: frozenset[str] = ONLY_SUPERUSER,
    change_post_ok: int | tuple[int, ...] = (200, 302),
    change_post_data: dict | None = None,
    actions: dict[str, frozenset[str]] | None = None,
) -> dict[str, Access]:
    """The six pages Django's admin serves for a registered model.

    view: who may open the list, an object's page and its history; add/change/delete: who
    may open the add form / save an object's page / open the delete confirmation. An empty
    POST never saves or deletes anything valid: the forms answer with their errors and the
    delete page with its confirmation (deleting needs post=yes)."""
    app, model = label.split(".")
    prefix = f"admin:{app}_{model}"
    return {
        f"{prefix}_changelist": Access(
            get=view | change, actions={"delete_selected": delete, **(actions or {})}
        ),
        f"{prefix}_add": Access(get=add, post=add),
        f"{prefix}_change": Access(
            get=view | change,
            post=change,
            post_ok=change_post_ok,
            post_data=change_post_data or {},
        ),
        f"{prefix}_history": Access(get=view | change),
        f"{prefix}_delete": Access(get=delete, post=delete),
        # Django's shortcut from an object's bare URL to its change page: any staff user.
        f"admin/{app}/{model}/<path:object_id>/": Access(get=STAFF, ok=302),
    }


ROLE_MATRIX: dict[str, Access | dict[str, Access]] = {
    # --- outside the admin: liveness, feeds and webhooks with their own credentials --------
    "health": Access(get=EVERYONE, login=False),
    # 503: the world's systems are unreachable on purpose, and critical.
    "health-detailed": Access(get=EVERYONE, ok=(200, 503), login=False),
    # A token is set (MATRIX_SETTINGS) and nobody sends it: a session is no credential here.
    "metrics": Access(get=NOBODY, refused=401, login=False),
    "incidents:alertmanager_webhook": Access(get=POST_ONLY, post=NOBODY, refused=401, login=False),
    # The secret link is the credential (calendar apps cannot sign in).
    "maintenance:calendar_feed": Access(get=EVERYONE, login=False),
    # The public status page (opsportal/statuspage/): anyone, signed in or not. An empty
    # subscribe form is refused (400) as a bad address; a confirmation link that is not one
    # is refused (400); the calendar token is no unsubscribe link (404). Nothing changes.
    **{
        f"statuspage:{name}": Access(get=EVERYONE, login=False)
        for name in ("index", "incident", "history", "feed", "calendar")
    },
    "statuspage:subscribe": Access(get=EVERYONE, post=EVERYONE, post_ok=400, login=False),
    "statuspage:confirm": Access(get=EVERYONE, ok=400, post=EVERYONE, post_ok=400, login=False),
    "statuspage:unsubscribe": Access(get=EVERYONE, ok=404, post=EVERYONE, post_ok=404, login=False),
    # A page's signed single-use link is the credential, for acknowledging that incident
    # only (tests/incidents/test_acknowledge_links.py has the refusals).
    "incidents:acknowledge_link": Access(get=EVERYONE, post=EVERYONE, login=False),
    # A person's shifts feed: its secret link is the credential, like the maintenance one.
    "people:shift_feed": Access(get=EVERYONE, login=False),
    # --- the REST API (issue 12): an API token is the only credential -------------------------
    # A signed-in session is refused (401) at every endpoint; who may call each with a token
    # is tests/api/test_roles.py's table (API_ROLES), which covers every endpoint the schema has.
    **{
        f"api:{name}": Access(get=NOBODY, post=NOBODY, refused=401, login=False)
        for name in (
            "incident-list",
            "incident-detail",
            "incident-timeline",
            *[
                f"incident-{action}"
                for action in (
                    "acknowledge",
                    "investigate",
                    "mitigate",
                    "resolve",
                    "close",
                    "reopen",
                    "escalate",
                    "notes",
                    "runbooks",
                    "operations",
                )
            ],
            "alert-list",
            "alert-detail",
            "system-list",
            "system-detail",
            "operation-list",
            "operation-detail",
            "backup-list",
            "backup-detail",
            "backup-latest-verified",
            "restoredrill-list",
            "restoredrill-detail",
            "maintenance-now",
            "maintenancewindow-list",
            "maintenancewindow-detail",
            "maintenancewindow-cancel",
            "auditrecord-list",
            "auditrecord-detail",
            "auditrecord-export",
        )
    },
    # Any other path under /api/v1/: the API's own 404 body, for everyone.
    "api:not_found": Access(get=EVERYONE, ok=404, post=EVERYONE, post_ok=404, login=False),
    # The OpenAPI document: a token or a signed-in session (the docs page fetches it).
    "api:schema": Access(get=STAFF, refused=401, login=False),
    # Swagger UI, served from the installed package: signed-in users.
    "api:docs": Access(get=STAFF),
    # --- the admin site's own pages --------------------------------------------------------
    "admin:index": Access(get=STAFF),
    # Signed-in users are sent on to the index.
    "admin:login": Access(get=roles(ANONYMOUS), login=False, refused=302),
    "admin:logout": Access(get=POST_ONLY, post=STAFF),
    "admin:password_change": Access(get=STAFF, post=STAFF),
    "admin:password_change_done": Access(get=STAFF),
    "admin:autocomplete": Access(
        get=STAFF, query="app_label=people&model_name=rotationmember&field_name=contact&term=Matrix"
    ),
    "admin:jsi18n": Access(get=STAFF),
    # No portal model has a public page ("view on site"): 404 for every staff user.
    "admin:view_on_site": Access(get=STAFF, ok=404),
    "admin:app_list": {
        **{app: Access(get=ONLY_SUPERUSER, refused=404) for app in ("auth", "axes")},
        **{
            app: Access(get=STAFF)
            for app in (
                "django_celery_beat",
                "audit",
                "systems",
                "people",
                "health",
                "operations",
                "approvals",
                "monitoring",
                "statuspage",
                "incidents",
                "backups",
                "maintenance",
                "api",
            )
        },
    },
    "admin/(?P<url>.*)$": Access(get=STAFF, ok=404),
    # --- accounts and sign-in records: superusers only --------------------------------------
    **model_pages("auth.group", view=ONLY_SUPERUSER),
    **model_pages("auth.user", view=ONLY_SUPERUSER),
    "admin:auth_user_password_change": Access(get=ONLY_SUPERUSER, post=ONLY_SUPERUSER),
    # Resetting someone else's second factor: superusers only (audited).
    "admin:auth_user_two_factor_reset": Access(get=ONLY_SUPERUSER, post=ONLY_SUPERUSER),
    # --- one's own second factor: every signed-in staff user --------------------------------
    "accounts:two_factor": Access(get=STAFF),
    "accounts:two_factor_setup": Access(get=STAFF, post=STAFF),
    # The test clients' sessions are verified already: sent on to where they were going.
    "accounts:two_factor_verify": Access(get=STAFF, ok=302, post=STAFF, post_ok=302),
    "accounts:two_factor_backup_codes": Access(get=POST_ONLY, post=STAFF),
    **model_pages(
        "axes.accessattempt",
        view=ONLY_SUPERUSER,
        add=NOBODY,
        actions={"cleanup_expired_attempts": ONLY_SUPERUSER},
    ),
    **model_pages("axes.accesslog", view=ONLY_SUPERUSER, add=NOBODY),
    **model_pages("axes.accessfailurelog", view=ONLY_SUPERUSER, add=NOBODY),
    # --- schedules (django-celery-beat) ------------------------------------------------------
    # NEW HOLE (not in issue 9's list): django-celery-beat's list actions declare no
    # permission, so today every role, Viewers included, is offered them and can switch off
    # (or run at once) any schedule (backups, monitoring, sweepers) with a queryset update
    # that leaves no audit record. Secure: whoever may change schedules, DevOps.
    **model_pages(
        "django_celery_beat.periodictask",
        view=STAFF,
        change=roles(DEV, SU),
        actions={
            name: roles(DEV, SU)
            for name in ("enable_tasks", "disable_tasks", "toggle_tasks", "run_tasks")
        },
    ),
    **model_pages("django_celery_beat.clockedschedule", view=STAFF),
    **model_pages("django_celery_beat.crontabschedule", view=STAFF),
    **model_pages("django_celery_beat.solarschedule", view=STAFF),
    **model_pages("django_celery_beat.intervalschedule", view=STAFF),
    # --- the audit log: read by everyone, changed by nobody --------------------------------
    **model_pages("audit.auditrecord", view=STAFF, add=NOBODY, change=NOBODY, delete=NOBODY),
    "admin:audit_auditrecord_export": Access(get=STAFF),
    # --- systems ---------------------------------------------------------------------------
    **model_pages(
        "systems.dockerengine",
        view=STAFF,
        add=roles(DEV, SU),
        change=roles(DEV, SU),
        delete=roles(DEV, SU),
    ),
    **model_pages(
        "systems.postgresdatabase",
        view=STAFF,
        add=roles(DBA, DEV, SU),
        change=roles(DBA, DEV, SU),
        delete=roles(DEV, SU),
    ),
    **model_pages(
        "systems.rediscache",
        view=STAFF,
        add=roles(DEV, SU),
        change=roles(DEV, SU),
        delete=roles(DEV, SU),
    ),
    **model_pages(
        "systems.httpendpoint",
        view=STAFF,
        add=roles(DEV, SU),
        change=roles(DEV, SU),
        delete=roles(DEV, SU),
    ),
    **{
        f"admin:systems_{kind}_test_connection": Access(get=POST_ONLY, post=RESPONDERS)
        for kind in ("dockerengine", "postgresdatabase", "rediscache", "httpendpoint")
    },
    # All systems in one list; an object's page redirects to its kind's page.
    **model_pages("systems.system", view=STAFF, add=NOBODY, change=NOBODY, delete=roles(DEV, SU)),
    "admin:systems_system_change": Access(get=STAFF, ok=302, post=STAFF, post_ok=302),
    # --- people ----------------------------------------------------------------------------
    **model_pages("people.team", view=STAFF, add=roles(DEV, SU), change=roles(DEV, SU)),
    **model_pages("people.contact", view=STAFF, add=roles(DEV, SU), change=roles(DEV, SU)),
    **model_pages("people.oncallrotation", view=STAFF, add=roles(DEV, SU), change=roles(DEV, SU)),
    # Swaps and cover have pages of their own: On-call engineers record them there without
    # being able to change the rotation (whose page they may not save).
    **model_pages(
        "people.oncalloverride", view=STAFF, add=roles(OC, DEV, SU), change=roles(OC, DEV, SU)
    ),
    **model_pages("people.webhookchannel", view=STAFF, add=roles(DEV, SU), change=roles(DEV, SU)),
    # "Take this shift" records an override: those who may record overrides (the service
    # also needs them to be in the rotation; the matrix users are not, so theirs is refused
    # with a message after the permission check).
    "admin:people_oncallrotation_take_shift": Access(
        get=POST_ONLY, post=roles(OC, DEV, SU), refused=MESSAGE
    ),
    # One's own shifts and feed link (and resetting it): every staff user.
    "admin:people_oncallrotation_my_shifts": Access(get=STAFF, post=STAFF),
    **model_pages(
        "people.notification",
        view=STAFF,
        add=NOBODY,
        change=NOBODY,
        delete=NOBODY,
        actions={"retry_now": roles(OC, DEV, SU)},
    ),
    # --- two-person approval (issue 14) ------------------------------------------------------
    # The policies: seen by everyone, switched on or off by an admin (superusers).
    **model_pages(
        "approvals.approvalpolicy", view=STAFF, add=NOBODY, change=ONLY_SUPERUSER, delete=NOBODY
    ),
    # The approval page (linked from the notification) is read by everyone; deciding needs
    # the approve permission of the request's scope (the world's is a restore: DBAs). An
    # empty POST is refused with a message (a reason is needed) and changes nothing.
    **model_pages(
        "approvals.approvalrequest", view=STAFF, add=NOBODY, change=NOBODY, delete=NOBODY
    ),
    "admin:approvals_approvalrequest_decide": Access(get=POST_ONLY, post=roles(DBA, SU)),
    # --- health, operations, monitoring ------------------------------------------------------
    **model_pages("health.heartbeat", view=STAFF, add=NOBODY, change=NOBODY),
    # Cancelling a queued operation is offered to every role that may run some kind of
    # operation; the service then needs the permission to run the selected one's kind.
    **model_pages(
        "operations.operation",
        view=STAFF,
        add=NOBODY,
        delete=NOBODY,
        actions={"cancel_queued": RESPONDERS},
    ),
    **model_pages("operations.evidence", view=STAFF, add=NOBODY, change=NOBODY, delete=NOBODY),
    **model_pages(
        "monitoring.alertrule",
        view=STAFF,
        add=roles(DEV, SU),
        change=roles(OC, DEV, SU),
        delete=roles(DEV, SU),
    ),
    **model_pages(
        "monitoring.collectionschedule",
        view=STAFF,
        add=NOBODY,
        change=roles(DEV, SU),
        delete=roles(DEV, SU),
    ),
    **model_pages("monitoring.alertstate", view=STAFF, add=NOBODY, change=NOBODY),
    # --- the status page ---------------------------------------------------------------------
    # Components and their mapping to systems: DevOps. Subscribers sign up on the public page;
    # DevOps may delete one who asks (nobody edits them).
    **model_pages(
        "statuspage.component",
        view=STAFF,
        add=roles(DEV, SU),
        change=roles(DEV, SU),
        delete=roles(DEV, SU),
    ),
    **model_pages(
        "statuspage.subscriber", view=STAFF, add=NOBODY, change=NOBODY, delete=roles(DEV, SU)
    ),
    # --- incidents -------------------------------------------------------------------------
    # Anyone in a role may open an incident (Viewers too: they report what they see).
    **model_pages(
        "incidents.incident",
        view=STAFF,
        add=roles(VW, OC, DBA, DEV, SEC, SU),
        change=RESPONDERS,
    ),
    **{
        f"admin:incidents_incident_{name}": Access(get=POST_ONLY, post=RESPONDERS)
        for name in ("transition", "escalate", "mark_mitigated", "note", "step_done")
    },
    "admin:incidents_incident_attach_runbook": Access(
        get=POST_ONLY,
        post=RESPONDERS,
        post_data={"runbook": "<incidents.runbook>"},
    ),
    # The step restarts a container: the roles whose runbook steps restart containers.
    "admin:incidents_incident_step_run": Access(get=roles(OC, DEV, SU), post=roles(OC, DEV, SU)),
    # Hole 2 of issue 9: evidence is downloaded with view_evidence, which every role that
    # works incidents holds. Secure: the Security team (and superusers) only.
    "admin:incidents_incident_evidence": Access(get=roles(SEC, SU)),
    # The post-incident review draft: read (download, printable page) by whoever may view
    # the incident, committed to Git by whoever may edit its review. The world's incident is
    # still open, so the allowed roles are sent back with "written once it is resolved"
    # (tests/incidents/test_postmortem.py reads a resolved one).
    **{
        f"admin:incidents_incident_postmortem_{name}": Access(get=STAFF, ok=302)
        for name in ("download", "print")
    },
    "admin:incidents_incident_postmortem_commit": Access(get=POST_ONLY, post=RESPONDERS),
    **model_pages("incidents.runbook", view=STAFF),
    # Publishing an incident on the status page and posting its public updates: whoever
    # works incidents.
    **model_pages("incidents.publicincident", view=STAFF, add=RESPONDERS, change=RESPONDERS),
    "admin:incidents_publicincident_post_update": Access(get=POST_ONLY, post=RESPONDERS),
    **model_pages("incidents.alert", view=STAFF, add=NOBODY, change=NOBODY),
    # Who is paged when: DevOps keep the teams and rotations, and the policies with them.
    **model_pages(
        "incidents.escalationpolicy",
        view=STAFF,
        add=roles(DEV, SU),
        change=roles(DEV, SU),
        delete=roles(DEV, SU),
    ),
    # What each escalation sent: written by the escalation service only.
    **model_pages("incidents.escalation", view=STAFF, add=NOBODY, change=NOBODY, delete=NOBODY),
    # --- backups -----------------------------------------------------------------------------
    **model_pages(
        "backups.backupplan",
        view=STAFF,
        add=roles(DBA, SU),
        change=roles(DBA, SU),
        actions={"back_up_now": roles(DBA, SU), "apply_retention": roles(DBA, SU)},
    ),
    **model_pages("backups.backup", view=STAFF, add=NOBODY, change=NOBODY, delete=NOBODY),
    "admin:backups_backup_verify": Access(get=POST_ONLY, post=roles(DBA, SU)),
    "admin:backups_backup_drill": Access(get=POST_ONLY, post=roles(DBA, SU)),
    "admin:backups_backup_restore": Access(get=roles(DBA, SU), post=roles(DBA, SU)),
    **model_pages("backups.restore", view=STAFF, add=NOBODY, change=NOBODY, delete=NOBODY),
    **model_pages("backups.restoredrill", view=STAFF, add=NOBODY, change=NOBODY, delete=NOBODY),
    # --- personal API tokens: every staff user makes and revokes their own ----------------
    # Nobody edits or deletes a token (revoking keeps it, for the history of what it did).
    **model_pages(
        "api.apitoken",
        view=STAFF,
        add=STAFF,
        change=NOBODY,
        delete=NOBODY,
        actions={"revoke_tokens": STAFF},
    ),
    # The world's token is the superuser's: to anyone else it does not exist (their list
    # shows only their own tokens), so its page sends them to the index. Saving any token's
    # page is refused to everyone (tests/api/test_tokens.py).
    "admin:api_apitoken_change": Access(get=ONLY_SUPERUSER, refused=302),
    "admin:api_apitoken_history": Access(get=ONLY_SUPERUSER, refused=302),
    # --- maintenance -------------------------------------------------------------------------
    **model_pages(
        "maintenance.maintenancewindow", view=STAFF, add=roles(DEV, SU), change=roles(DEV, SU)
    ),
    "admin:maintenance_maintenancewindow_month": Access(get=STAFF),
    # Each person's own calendar link and time zone.
    "admin:maintenance_maintenancewindow_subscribe": Access(get=STAFF, post=STAFF),
    # Each action's page, like its form, only to the roles that may perform it (DevOps
    # conducts windows and may cancel them); others are sent back to the window with the
    # permission named. An action that does not exist is not found.
    "admin:maintenance_maintenancewindow_action": {
        **{
            action: Access(get=roles(DEV, SU), post=roles(DEV, SU), refused=MESSAGE)
            for action in ("start", "complete", "rollback", "cancel", "log")
        },
        "no-such-action": Access(get=STAFF, ok=404, post=STAFF, post_ok=404),
    },
    "admin:maintenance_maintenancewindow_step": Access(
        get=POST_ONLY, post=roles(DEV, SU), refused=MESSAGE
    ),
    **model_pages(
        "maintenance.maintenanceplan", view=STAFF, add=roles(DEV, SU), change=roles(DEV, SU)
    ),
    **model_pages(
        "maintenance.recurringtask", view=STAFF, add=roles(SEC, SU), change=roles(SEC, SU)
    ),
    # Completing a due date is saving its page with notes: it needs complete_taskoccurrence
    # (the Security team), not change_taskoccurrence (no role).
    **model_pages(
        "maintenance.taskoccurrence",
        view=STAFF,
        add=NOBODY,
        change=roles(SEC, SU),
        change_post_data={"notes": "Checked by the role matrix."},
    ),
    "admin:maintenance_taskoccurrence_scan": Access(
        get=POST_ONLY, post=roles(SEC, SU), refused=MESSAGE
    ),
}
