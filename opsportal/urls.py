from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "OpsPortal"
admin.site.site_title = "OpsPortal"
admin.site.index_title = "Operations"

urlpatterns = [
    path("", include("opsportal.health.urls")),
    # One's own second factor (set up, verify, backup codes); before admin/ so it wins.
    path("admin/two-factor/", include("opsportal.accounts.urls")),
    path("admin/", admin.site.urls),
    path("incidents/", include("incidents.urls")),
    path("maintenance/", include("maintenance.urls")),
    path("status/", include("opsportal.statuspage.urls")),
]
