"""Settings of the Celery worker the backup worker tests start (and kill): the portal's
own, with a heartbeat fast enough that a short stale window in the test is meaningful."""

from opsportal.settings import *  # noqa: F403

BACKUP_HEARTBEAT_SECONDS = 0.5
