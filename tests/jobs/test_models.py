"""The shared job columns (opsportal.jobs.models.JobFields): the job models that inherit
them keep exactly the columns they had, and their admin pages show the fields in the order
they always did."""

import pytest
from django.contrib import admin

from backups.models import Backup, Restore, RestoreDrill
from opsportal.jobs.models import JobFields
from opsportal.operations.models import Operation

SHARED = [f.name for f in JobFields._meta.fields]

# The shared columns each model has, and the ones it declares itself because its
# definition differs (status choices, an index); the rest of SHARED it does not have.
HAS = {
    Operation: (
        ["status", "requested_at", "started_at", "finished_at", "dispatch_count", "error"],
        {"status", "requested_at"},
    ),
    Backup: (
        ["status", "requested_at", "started_at", "finished_at", "worker", "heartbeat_at"],
        {"status", "finished_at"},
    ),
    Restore: (["status", "requested_at", "started_at", "finished_at"], {"status"}),
    RestoreDrill: (["status", "requested_at", "started_at", "finished_at"], {"status"}),
}


@pytest.mark.parametrize("model", list(HAS), ids=lambda m: m.__name__)
def test_a_job_model_has_the_shared_columns_it_always_had_and_no_others(model):
    assert issubclass(model, JobFields) and not model._meta.abstract
    has, own = HAS[model]
    names = {f.name for f in model._meta.fields}
    assert names & set(SHARED) == set(has)
    for name in set(has) - own:
        # Inherited as declared once: same type and options, so the table is unchanged.
        inherited = model._meta.get_field(name).deconstruct()[1:]
        assert inherited == JobFields._meta.get_field(name).deconstruct()[1:]
    for name in own:
        assert (
            model._meta.get_field(name).deconstruct()[1:]
            != JobFields._meta.get_field(name).deconstruct()[1:]
        )


@pytest.mark.parametrize("model", [Operation, Restore, RestoreDrill], ids=lambda m: m.__name__)
def test_the_admin_page_still_shows_every_field_with_the_shared_ones_in_place(model, rf):
    """Inherited columns come first in _meta; the read-only pages name their order so they
    show what they showed before, and every field of the model."""
    model_admin = admin.site._registry[model]
    shown = model_admin.get_fields(rf.get("/"))
    assert sorted(shown) == sorted(f.name for f in model._meta.fields)
    # As before: the row's own fields, then its times.
    assert shown[0] == "id"
    assert shown.index("requested_at") < shown.index("started_at") < shown.index("finished_at")
    assert shown.index("status") < shown.index("requested_at")
