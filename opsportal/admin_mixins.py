"""What many admins share, written once (the shared layer: no domain app is imported here)."""

from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied

from opsportal.refusals import ServiceRefused


class ReadOnlyAdminMixin:
    """For records only services write (audit, evidence, deliveries, alerts, timelines): the
    admin shows them, nobody adds or edits them by hand.

    Deleting stays under the model's delete permission, as on any admin, unless the admin sets
    `deletable = False`: history kept as evidence (audit records, backups, notifications) is
    not deleted from the admin either. Put the mixin before the admin base class."""

    deletable = True

    # `obj` is optional so that one method serves both ModelAdmin (called with the request
    # only) and inlines (called with the parent object too).
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        if not self.deletable:
            return False
        return super().has_delete_permission(request, obj)


def message_refusal(
    model_admin, request, refusal: ServiceRefused | PermissionDenied, level: int = messages.ERROR
) -> None:
    """Show on the admin page why a service (or its permission check) refused: its message, as
    the admin's usual message, at `level` (an error unless the caller says otherwise)."""
    text = refusal.message if isinstance(refusal, ServiceRefused) else str(refusal)
    model_admin.message_user(request, text, level)


class _BoundedAutocompleteSelect(AutocompleteSelect):
    """Django's autocomplete widget looks the submitted value up again to show it when the
    form is redisplayed with errors, without checking it first: "abc" or a 25-digit id for an
    integer key raised ValueError there (a 500) instead of the field's "Select a valid
    choice" (issue #17). Values that cannot be a key are simply not shown."""

    def optgroups(self, name, value, attr=None):
        pk = self.field.remote_field.model._meta.pk
        if pk.get_internal_type() in ("AutoField", "BigAutoField", "IntegerField"):
            value = [v for v in value if re.fullmatch(r"[0-9]{1,18}", str(v))]
        return super().optgroups(name, value, attr)


class BoundedAutocompleteMixin:
    """For a ModelAdmin or inline with autocomplete_fields: see _BoundedAutocompleteSelect."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if formfield is not None and type(formfield.widget) is AutocompleteSelect:
            formfield.widget.__class__ = _BoundedAutocompleteSelect
        return formfield
