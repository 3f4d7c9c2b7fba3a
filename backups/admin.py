"""The DBA's workflow in the admin: plans, manual backups, verification, drills, restores."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from backups import services
from backups.models import Backup, BackupPlan, Restore, RestoreDrill
from opsportal.admin_mixins import ReadOnlyAdminMixin
from opsportal.operations.previews import preview_from_token, preview_token
from opsportal.systems.models import PostgresDatabase


class BackupPlanForm(forms.ModelForm):
    class Meta:
        model = BackupPlan
        fields = [
            "database",
            "enabled",
            "schedule",
            "method",
            "format",
            "compression",
            "storage_location",
            "keep_daily",
            "keep_weekly",
            "keep_monthly",
            "time_limit_seconds",
            "open_incident_on_failure",
            "suspicious_row_drop_percent",
        ]

    def clean_schedule(self):
        schedule = self.cleaned_data["schedule"].strip()
        services.schedule_crontab(schedule)
        return schedule

    def clean(self):
        cleaned = super().clean()
        database = cleaned.get("database")
        if cleaned.get("method") == "container" and database and not database.runs_in_container:
            self.add_error(
                "method",
                f"{database} has no Docker engine and container set, so pg_dump cannot run "
                "inside its container.",
            )
        return cleaned


class RetentionConfirmForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=500,
        help_text="Why the files are deleted now rather than after the next backup.",
    )


@admin.register(BackupPlan)
class BackupPlanAdmin(admin.ModelAdmin):
    form = BackupPlanForm
    list_display = [
        "database",
        "enabled",
        "schedule",
        "method",
        "format",
        "compression",
        "keep_daily",
        "keep_weekly",
        "keep_monthly",
    ]
    list_filter = ["enabled", "method", "format"]
    list_select_related = ["database"]
    actions = ["back_up_now", "apply_retention"]

    def save_model(self, request, obj, form, change):
        # The service keeps the plan's django-celery-beat entry in step with the schedule.
        services.backup_plan_save(plan=obj)

    def has_run_backup_permission(self, request):
        return request.user.has_perm("backups.run_backup")

    @admin.action(description="Back up the selected databases now", permissions=["run_backup"])
    def back_up_now(self, request, queryset):
        for plan in queryset.select_related("database"):
            backup = services.backup_request(
                database=plan.database, actor=request.user, reason="Manual backup from the admin"
            )
            url = reverse("admin:backups_backup_change", args=[backup.pk])
            self.message_user(
                request,
                format_html(
                    'Backup of {} queued: <a href="{}">backup #{}</a>.',
                    plan.database,
                    url,
                    backup.pk,
                ),
                messages.SUCCESS,
            )

    @admin.action(
        description="Apply retention now (deletes old backup files)", permissions=["change"]
    )
    def apply_retention(self, request, queryset):
        # Deleting backup files cannot be undone: first a page listing exactly what would
        # go, and a reason for the audit log (like delete_selected's confirmation).
        plans = list(queryset.select_related("database"))
        form = RetentionConfirmForm(request.POST if "confirmed" in request.POST else None)
        if form.is_bound and form.is_valid():
            for plan in plans:
                pruned = services.backup_plan_apply_retention(
                    plan=plan, actor=request.user, reason=form.cleaned_data["reason"]
                )
                self.message_user(request, f"{plan}: {len(pruned)} old backup file(s) deleted.")
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Apply retention: delete old backup files?",
            "form": form,
            "plans": [(plan, services.backups_beyond_retention(plan=plan)) for plan in plans],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/backups/backupplan/apply_retention.html", context)


class RestoreInline(admin.TabularInline):
    model = Restore
    fk_name = "backup"
    extra = 0
    can_delete = False
    fields = ["target", "status", "requested_by", "reason", "duration_seconds", "message"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class RestoreDrillInline(admin.TabularInline):
    model = RestoreDrill
    extra = 0
    can_delete = False
    fields = ["status", "requested_at", "duration_seconds", "tables_compared", "message"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


def restore_confirmation(request, backup, target) -> dict:
    """The restore preview the person confirmed for this backup and target (`confirmed`),
    or a fresh one to show first (`preview`, `preview_token`, `preview_note`)."""
    token = request.POST.get("preview_token", "")
    shown = preview_from_token(token=token, actor=request.user)
    if shown and (shown.get("kind"), shown.get("backup_id"), shown.get("target_id")) == (
        "restore",
        backup.pk,
        target.pk,
    ):
        return {"preview": shown, "preview_token": token, "confirmed": shown}
    fresh = services.restore_preview(backup=backup, target=target)
    return {
        "preview": fresh,
        "preview_token": preview_token(preview=fresh, actor=request.user),
        "preview_note": "This is what the restore replaces now: check it and confirm again."
        if not shown
        else "The preview you saw was for another target or is too old: check this one.",
    }


class RestoreForm(forms.Form):
    target = forms.ModelChoiceField(
        queryset=PostgresDatabase.objects.all(),
        help_text="The original database, or another registered one.",
    )
    confirmation = forms.CharField(
        label="Type the target system's name to confirm",
        max_length=80,
        help_text="The registered name of the system chosen above (e.g. orders-db-prod), not "
        "its database name: production and staging often share the database name.",
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=500)
    disconnect_sessions = forms.BooleanField(
        required=False,
        help_text="End other sessions connected to the target (otherwise the restore refuses "
        "to start while any are connected).",
    )


@admin.register(Backup)
class BackupAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    deletable = False  # kept as history: not deleted from the admin either
    list_display = [
        "id",
        "database",
        "trigger",
        "status_badge",
        "verification",
        "drill_result",
        "history_badge",
        "size",
        "requested_at",
        "duration_seconds",
    ]
    list_display_links = ["id", "database"]
    list_filter = ["status", "verification", "drill_result", "history_check", "trigger", "database"]
    list_select_related = ["database"]
    show_full_result_count = False
    date_hierarchy = "requested_at"
    inlines = [RestoreDrillInline, RestoreInline]
    change_form_template = "admin/backups/backup/change_form.html"
    fieldsets = [
        (None, {"fields": ["database", "plan", "status", "trigger", "reason", "requested_by"]}),
        (
            "File",
            {
                "fields": [
                    "method",
                    "format",
                    "compression",
                    "storage_location",
                    "file_name",
                    "size_bytes",
                    "sha256",
                    "server_version",
                    "pruned_at",
                ]
            },
        ),
        (
            "Run",
            {
                "fields": [
                    "requested_at",
                    "started_at",
                    "finished_at",
                    "duration_seconds",
                    "message",
                ]
            },
        ),
        (
            "Verification",
            {
                "fields": [
                    "verification",
                    "verified_at",
                    "verification_message",
                    "drill_result",
                    "table_row_counts",
                ]
            },
        ),
        (
            "Compared with recent backups",
            {
                "fields": [
                    "history_check",
                    "history_findings",
                    "history_checked_at",
                    "history_incident",
                ]
            },
        ),
    ]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Backup._meta.fields] + ["history_findings", "history_incident"]

    @admin.display(description="History", ordering="history_check")
    def history_badge(self, backup):
        if backup.history_check != "suspicious":
            return backup.get_history_check_display() if backup.history_check else "—"
        return format_html(
            '<strong class="status-failing" title="{}">Suspicious</strong>',
            " ".join(backup.history_warnings),
        )

    @admin.display(description="Findings")
    def history_findings(self, backup):
        if not backup.history_warnings:
            return "—"
        return format_html_join(
            "", "<p>{}</p>", ((warning,) for warning in backup.history_warnings)
        )

    @admin.display(description="Incident")
    def history_incident(self, backup):
        if backup.history_incident_id is None:
            return "—"
        url = reverse("admin:incidents_incident_change", args=[backup.history_incident_id])
        return format_html('<a href="{}">incident #{}</a>', url, backup.history_incident_id)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, backup):
        css = {"succeeded": "status-ok", "failed": "status-failing"}.get(
            backup.status, "status-neutral"
        )
        return format_html('<strong class="{}">{}</strong>', css, backup.get_status_display())

    @admin.display(description="Size", ordering="size_bytes")
    def size(self, backup):
        if backup.size_bytes is None:
            return "—"
        return f"{backup.size_bytes / 1_048_576:.1f} MiB"

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<id:object_id>/verify/", wrap(self.verify_view), name="backups_backup_verify"),
            path("<id:object_id>/drill/", wrap(self.drill_view), name="backups_backup_drill"),
            path("<id:object_id>/restore/", wrap(self.restore_view), name="backups_backup_restore"),
            *super().get_urls(),
        ]

    def _backup(self, request, object_id, permission):
        backup = get_object_or_404(Backup.objects.select_related("database"), pk=object_id)
        if not self.has_view_permission(request, backup) or not request.user.has_perm(permission):
            raise PermissionDenied
        return backup

    def _back(self, backup):
        return HttpResponseRedirect(reverse("admin:backups_backup_change", args=[backup.pk]))

    def verify_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        backup = self._backup(request, object_id, "backups.run_backup")
        if not backup.is_restorable:
            self.message_user(request, "This backup has no file to verify.", messages.ERROR)
            return self._back(backup)
        services.backup_verify(backup=backup, actor=request.user)
        ok = backup.verification == "verified"
        self.message_user(
            request,
            f"Verification {'passed' if ok else 'FAILED'}: {backup.verification_message}",
            messages.SUCCESS if ok else messages.ERROR,
        )
        return self._back(backup)

    def drill_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        backup = self._backup(request, object_id, "backups.drill_backup")
        try:
            services.drill_request(backup=backup, actor=request.user)
        except ValidationError as exc:
            self.message_user(request, exc.messages[0], messages.ERROR)
        else:
            self.message_user(
                request, "Restore drill queued; its result appears below when it finishes."
            )
        return self._back(backup)

    def restore_view(self, request, object_id):
        backup = self._backup(request, object_id, "backups.restore_backup")
        # No target is pre-selected: proposing the source database would make overwriting
        # production one click away; the operator chooses it deliberately.
        form = RestoreForm(request.POST or None)
        preview = {}
        if request.method == "POST" and form.is_valid():
            # What the restore replaces, read live: shown, then confirmed (previews.py).
            preview = restore_confirmation(request, backup, form.cleaned_data["target"])
            if not preview.get("confirmed"):
                try:  # said with the preview, before the person confirms it
                    services.restore_check(
                        backup=backup,
                        target=form.cleaned_data["target"],
                        reason=form.cleaned_data["reason"],
                        confirmation=form.cleaned_data["confirmation"],
                    )
                except ValidationError as exc:
                    form.add_error(None, exc.messages[0])
        if request.method == "POST" and form.is_valid() and preview.get("confirmed"):
            try:
                restore = services.restore_request(
                    backup=backup,
                    target=form.cleaned_data["target"],
                    actor=request.user,
                    reason=form.cleaned_data["reason"],
                    confirmation=form.cleaned_data["confirmation"],
                    disconnect_sessions=form.cleaned_data["disconnect_sessions"],
                    preview=preview["confirmed"],
                )
            except ValidationError as exc:
                form.add_error(None, exc.messages[0])
            else:
                self.message_user(
                    request,
                    f"Restore of backup #{backup.pk} into {restore.target} "
                    + (
                        "awaits a second person's approval (the people who may approve it "
                        "were notified); once approved, "
                        if restore.status == "awaiting"
                        else "queued; "
                    )
                    + "a safety backup of the target is taken first. Its outcome appears below.",
                )
                return self._back(backup)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": backup,
            "backup": backup,
            "form": form,
            "title": f"Restore backup #{backup.pk}",
            **preview,
        }
        return TemplateResponse(request, "admin/backups/backup/restore.html", context)


class _ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    deletable = False  # kept as history: not deleted from the admin either
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]


@admin.register(Restore)
class RestoreAdmin(_ReadOnlyAdmin):
    list_display = ["id", "backup", "target", "status", "requested_by", "requested_at"]
    list_filter = ["status", "target"]
    list_select_related = ["backup", "backup__database", "target", "requested_by"]
    # The page's order, named: the columns shared with every job (opsportal.jobs.JobFields)
    # would otherwise come first.
    fields = [
        "id",
        "backup",
        "target",
        "status",
        "reason",
        "preview",
        "requested_by",
        "disconnect_sessions",
        "safety_backup",
        "requested_at",
        "started_at",
        "finished_at",
        "duration_seconds",
        "message",
    ]


@admin.register(RestoreDrill)
class RestoreDrillAdmin(_ReadOnlyAdmin):
    list_display = ["id", "backup", "status", "tables_compared", "duration_seconds", "requested_at"]
    list_filter = ["status"]
    list_select_related = ["backup", "backup__database"]
    # The page's order, named (see RestoreAdmin).
    fields = [
        "id",
        "backup",
        "status",
        "requested_by",
        "scratch_database",
        "requested_at",
        "started_at",
        "finished_at",
        "duration_seconds",
        "tables_compared",
        "mismatches",
        "message",
    ]
