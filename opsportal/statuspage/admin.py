from django.contrib import admin
from django.utils.html import format_html

from opsportal.admin_mixins import ReadOnlyAdminMixin
from opsportal.statuspage import rules, services
from opsportal.statuspage.models import Component, Subscriber


@admin.register(Component)
class ComponentAdmin(admin.ModelAdmin):
    list_display = ["name", "position", "state", "state_since", "system_names"]
    list_editable = []
    filter_horizontal = ["systems"]
    fieldsets = [
        ("Shown publicly", {"fields": ["name", "description", "position"]}),
        (
            "Derived from monitoring",
            {"fields": ["systems", "state", "state_since", "state_reason", "how_derived"]},
        ),
    ]
    readonly_fields = ["state", "state_since", "state_reason", "how_derived"]
    ordering = ["position", "name"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("systems")

    @admin.display(description="systems")
    def system_names(self, component):
        return ", ".join(s.name for s in component.systems.all()) or "—"

    @admin.display(description="how the state is derived")
    def how_derived(self, component):
        return format_html("<pre class='status-rules'>{}</pre>", rules.RULES)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # The page follows a new mapping at once instead of at the next collection round.
        services.status_refresh_soon()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        services.status_refresh_soon()


@admin.register(Subscriber)
class SubscriberAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Subscribers sign up and leave on the public page; an admin can only look, or delete
    one on request."""

    list_display = ["email", "confirmed_at", "created_at", "scope"]
    list_filter = [("confirmed_at", admin.EmptyFieldListFilter)]
    search_fields = ["email"]
    fields = ["email", "components", "created_at", "confirmation_sent_at", "confirmed_at"]
    readonly_fields = fields
    show_full_result_count = False

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("components")

    @admin.display(description="components")
    def scope(self, subscriber):
        return ", ".join(c.name for c in subscriber.components.all()) or "all"
