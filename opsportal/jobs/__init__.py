"""The shared lifecycle of row-first background jobs (CONVENTIONS.md, "Background
operations"): claim, heartbeat, finish and sweep, written once for every kind of job, and
the abstract model of the columns they share (`opsportal.jobs.models.JobFields`, imported
from there and not re-exported here, so importing the functions never defines a model)."""

from opsportal.jobs.lifecycle import (
    JobSpec,
    job_claim,
    job_fail_dead,
    job_finish,
    job_heartbeat,
    job_redispatch_lost,
    job_sweep,
)

__all__ = [
    "JobSpec",
    "job_claim",
    "job_fail_dead",
    "job_finish",
    "job_heartbeat",
    "job_redispatch_lost",
    "job_sweep",
]
