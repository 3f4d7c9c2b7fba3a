"""Form helpers the maintenance admin modules share: a service's ValidationError as field
errors, and the lead-time check of windows and plans."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from maintenance import services


def _check_lead_hours(form: forms.ModelForm, cleaned: dict) -> None:
    """Lead times are whole hours, comma-separated (72,24): say so instead of failing later
    when the announcements are computed."""
    lead = cleaned.get("announce_lead_hours", "")
    if "announce_lead_hours" not in cleaned:
        return
    try:
        hours = [int(h) for h in lead.replace(" ", "").split(",") if h]
    except ValueError:
        form.add_error("announce_lead_hours", "Enter whole hours separated by commas: 72,24")
    else:
        if any(h <= 0 or h > services.MAX_LEAD_HOURS for h in hours):
            form.add_error(
                "announce_lead_hours",
                f"Each lead time must be between 1 and {services.MAX_LEAD_HOURS} hours.",
            )


def _check_field_bounds(form: forms.ModelForm, cleaned: dict, names: list[str]) -> None:
    """Run the model fields' own validators (date range, look-ahead, duration) before the
    form's rule check computes with the values: Django runs them only after clean(), and a
    date near year 9999 or a huge look-ahead would overflow the computation first."""
    for name in names:
        value = cleaned.get(name)
        if value in (None, ""):
            continue
        try:
            form._meta.model._meta.get_field(name).run_validators(value)
        except ValidationError as exc:
            form.add_error(name, exc)


def _add_errors(form: forms.ModelForm, exc: ValidationError) -> None:
    """A service's ValidationError as form errors next to the fields it names (a field the
    form does not show goes to the top of the form)."""
    for field, errors in exc.message_dict.items():
        form.add_error(field if field in form.fields else None, errors)
