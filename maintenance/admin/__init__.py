"""Maintenance windows, plans and recurring tasks in the admin: the workflow UI.

Per-window buttons (start, complete, roll back, cancel, document a change, run or tick a
checklist step) are get_urls() views that call services; a month view and each person's
calendar subscription page hang off the window changelist.

One module per concept. Admin autodiscovery imports this package only, so it imports each
module here: that import is what registers their ModelAdmins.
"""

from maintenance.admin.plans import MaintenancePlanAdmin, MaintenancePlanForm
from maintenance.admin.tasks import (
    OccurrenceCompleteForm,
    RecurringTaskAdmin,
    RecurringTaskForm,
    TaskOccurrenceAdmin,
)
from maintenance.admin.windows import (
    AnnouncementInline,
    ChangeLogInline,
    MaintenanceWindowAdmin,
    MaintenanceWindowForm,
    SuppressedAlertInline,
)

__all__ = [
    "AnnouncementInline",
    "ChangeLogInline",
    "MaintenancePlanAdmin",
    "MaintenancePlanForm",
    "MaintenanceWindowAdmin",
    "MaintenanceWindowForm",
    "OccurrenceCompleteForm",
    "RecurringTaskAdmin",
    "RecurringTaskForm",
    "SuppressedAlertInline",
    "TaskOccurrenceAdmin",
]
