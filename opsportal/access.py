"""The runbook's roles as Django groups, with what each may see and do."""

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

VIEW_EVERYTHING = "view"

# (app_label, codename) pairs, or "view" for view permission on every portal model.
ROLE_PERMISSIONS: dict[str, list] = {
    "Viewers": [VIEW_EVERYTHING],
    "On-call engineers": [
        VIEW_EVERYTHING,
        ("systems", "test_connection"),
        ("people", "add_oncalloverride"),
        ("people", "change_oncalloverride"),
        ("monitoring", "change_alertrule"),
        ("people", "retry_notification"),
    ],
    "Database admins": [
        VIEW_EVERYTHING,
        ("systems", "test_connection"),
        ("systems", "add_postgresdatabase"),
        ("systems", "change_postgresdatabase"),
        # Backup and recovery (the runbook's "Database Admin" owns restores).
        ("backups", "run_backup"),
        ("backups", "restore_backup"),
        ("backups", "drill_backup"),
        ("backups", "add_backupplan"),
        ("backups", "change_backupplan"),
    ],
    "DevOps": [
        VIEW_EVERYTHING,
        ("systems", "test_connection"),
        *[
            ("systems", f"{verb}_{model}")
            for verb in ("add", "change", "delete")
            for model in ("dockerengine", "postgresdatabase", "rediscache", "httpendpoint")
        ],
        # Deleting a system of any kind deletes its row in the shared System table too.
        ("systems", "delete_system"),
        *[
            ("people", f"{verb}_{model}")
            for verb in ("add", "change")
            for model in (
                "team",
                "contact",
                "oncallrotation",
                "oncalloverride",
                "webhookchannel",
                "rotationmember",
            )
        ],
        ("django_celery_beat", "change_periodictask"),
        *[
            ("monitoring", f"{verb}_{model}")
            for verb in ("add", "change", "delete")
            for model in ("alertrule", "collectionschedule")
        ],
        ("people", "retry_notification"),
        *[
            ("maintenance", f"{verb}_{model}")
            for verb in ("add", "change")
            for model in ("maintenancewindow", "maintenanceplan")
        ],
        ("maintenance", "conduct_maintenancewindow"),
        # The status page's components and their mapping to systems; removing a subscriber
        # who asks to be removed.
        *[("statuspage", f"{verb}_component") for verb in ("add", "change", "delete")],
        ("statuspage", "delete_subscriber"),
    ],
    "Security team": [
        VIEW_EVERYTHING,
        ("systems", "test_connection"),
        ("maintenance", "add_recurringtask"),
        ("maintenance", "change_recurringtask"),
        ("maintenance", "complete_taskoccurrence"),
    ],
}

# Incidents and operations: any member of a role may open and work an incident; each
# operation kind is its own permission, granted to the roles whose runbook steps use it.
_OPERATIONS_READ_ONLY = [
    "container_list",
    "container_inspect",
    "container_logs",
    "container_stats",
    "engine_events",
    "db_connections",
    "db_long_queries",
    "db_statistics",
    "db_container_logs",
    "cache_statistics",
    "api_probe",
]
_OPERATIONS_BY_ROLE = {
    "On-call engineers": ["container_restart", "cache_clear", "db_cancel_queries"],
    "Database admins": ["db_cancel_queries", "db_terminate_queries", "db_terminate_idle"],
    "DevOps": [
        "container_restart",
        "container_stop",
        "container_start",
        "service_scale",
        "container_update_limits",
        "cache_clear",
        "container_isolate",
        "evidence_preserve",
    ],
    "Security team": ["container_isolate", "evidence_preserve", "container_stop"],
}
for _role, _kinds in _OPERATIONS_BY_ROLE.items():
    ROLE_PERMISSIONS[_role] += [
        ("incidents", "add_incident"),
        ("incidents", "change_incident"),
        ("incidents", "manage_incident"),
        ("incidents", "run_incident_steps"),
        # The status page: publish an incident, post its public updates.
        ("incidents", "publish_incident"),
        ("incidents", "add_actionitem"),
        ("incidents", "change_actionitem"),
        *[("operations", f"run_{kind}") for kind in [*_OPERATIONS_READ_ONLY, *_kinds]],
    ]
ROLE_PERMISSIONS["Viewers"] += [("incidents", "add_incident")]
# Who is paged when, and how long to wait: DevOps keep the teams and rotations, so they keep
# the escalation policies too.
ROLE_PERMISSIONS["DevOps"] += [
    ("incidents", f"{verb}_{model}")
    for verb in ("add", "change", "delete")
    for model in ("escalationpolicy", "escalationstep")
]
# Preserved evidence holds a container's whole environment (every credential it was given)
# and possibly its filesystem: only the Security team, who keep the chain of custody, may
# download it. Every role still sees that an artefact exists, with its checksum.
ROLE_PERMISSIONS["Security team"] += [("operations", "download_evidence")]
# No role gets "operations.operate_any_system": an incident's operations act on the systems
# it lists as affected; a responder who needs another system adds it to the incident (a
# recorded change) rather than acting outside it. Superusers keep it, as every permission.

# Two-person approval (opsportal/approvals): the second person for a database operation or a
# restore is another DBA (the runbook's "Database Admin" owns both); for container, cache and
# API operations, DevOps. Superusers may approve anything, as every permission.
ROLE_PERMISSIONS["Database admins"] += [
    ("approvals", "approve_databases"),
    ("approvals", "approve_restores"),
]
ROLE_PERMISSIONS["DevOps"] += [
    ("approvals", "approve_containers"),
    ("approvals", "approve_caches"),
    ("approvals", "approve_api"),
]

PORTAL_APPS = [
    "systems",
    "people",
    "audit",
    "health",
    "operations",
    "approvals",
    "monitoring",
    "statuspage",
    "incidents",
    "backups",
    "maintenance",
    "django_celery_beat",
]


def groups_load_defaults() -> None:
    """Create the role groups and add their permissions (never removes what an admin added)."""
    for group_name, grants in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        query = Q(pk__in=[])
        for grant in grants:
            if grant == VIEW_EVERYTHING:
                query |= Q(content_type__app_label__in=PORTAL_APPS, codename__startswith="view_")
            else:
                app_label, codename = grant
                query |= Q(content_type__app_label=app_label, codename=codename)
        wanted = set(Permission.objects.filter(query).values_list("pk", flat=True))
        missing = wanted - set(group.permissions.values_list("pk", flat=True))
        if missing:
            group.permissions.add(*missing)
