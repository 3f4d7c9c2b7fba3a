"""Monitoring's services, one module per concept (CONVENTIONS.md, "Modules by concept"):

- `collection`: a collection round (lease the due systems, sample them, store, evaluate),
  in one process or spread over the `collect` queue's workers;
- `samples`: storing samples, dropping stale series, downsampling old samples (retention);
- `derived`: windowed figures computed from the samples (API p50/p95, restarts in 5 min);
- `alerts`: stepping the alert rules on what was collected;
- `alert_delivery`: handing a firing/resolved alert to incidents, and sending it again;
- `defaults`: the runbook's default rules and monitoring's periodic tasks.

Everything callers used from the former `services.py` is re-exported here, so
`from opsportal.monitoring.services import …` and `services.<name>` keep working.
"""

from opsportal.monitoring.services.alert_delivery import (
    RESEND_SUPPRESSED_SECONDS,
    _alert_systems,
    _deliver,
    _evidence_text,
    alerts_redeliver,
)
from opsportal.monitoring.services.alerts import (
    EVIDENCE_LIMIT,
    _step,
    alerts_evaluate,
    fingerprint_for,
)
from opsportal.monitoring.services.collection import (
    BACKUP_LOCATIONS_KEY,
    LEASE_SECONDS,
    QUICK_MS,
    SHARE_SIZE,
    CollectionDispatch,
    CollectionRound,
    SystemCollection,
    collection_claim_due,
    collection_dispatch_due,
    collection_run_due,
    collection_run_leased,
    collection_schedules_ensure,
)
from opsportal.monitoring.services.defaults import DEFAULT_RULES, monitoring_load_defaults
from opsportal.monitoring.services.derived import percentile
from opsportal.monitoring.services.samples import (
    ROLLUP_SECONDS,
    SeriesValues,
    sample_partitions_prepare,
    samples_downsample,
    samples_store,
    series_prune_stale,
)

__all__ = [
    "BACKUP_LOCATIONS_KEY",
    "DEFAULT_RULES",
    "EVIDENCE_LIMIT",
    "LEASE_SECONDS",
    "QUICK_MS",
    "RESEND_SUPPRESSED_SECONDS",
    "ROLLUP_SECONDS",
    "SHARE_SIZE",
    "CollectionDispatch",
    "CollectionRound",
    "SeriesValues",
    "SystemCollection",
    "_alert_systems",
    "_deliver",
    "_evidence_text",
    "_step",
    "alerts_evaluate",
    "alerts_redeliver",
    "collection_claim_due",
    "collection_dispatch_due",
    "collection_run_due",
    "collection_run_leased",
    "collection_schedules_ensure",
    "fingerprint_for",
    "monitoring_load_defaults",
    "percentile",
    "sample_partitions_prepare",
    "samples_downsample",
    "samples_store",
    "series_prune_stale",
]
