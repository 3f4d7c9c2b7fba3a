"""The shared lifecycle of row-first background jobs (CONVENTIONS.md, "Background
operations"): claim, heartbeat, finish and sweep, written once for every kind of job."""

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
