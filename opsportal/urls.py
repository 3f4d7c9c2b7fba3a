from django.contrib import admin
from django.urls import include, path

from backups.api import register as backups_api
from incidents.api import register as incidents_api
from maintenance.api import register as maintenance_api
from opsportal.audit.api import register as audit_api
from opsportal.monitoring.api import register as systems_api
from opsportal.operations.api import register as operations_api

admin.site.site_header = "OpsPortal"
admin.site.site_title = "OpsPortal"
admin.site.index_title = "Operations"

# Each app's REST API endpoints onto the shared router (opsportal/api/routing.py), here
# rather than in AppConfig.ready(): only the web process loads the URLs, so workers, beat
# and commands never import the REST framework.
for register_api in (
    incidents_api,
    systems_api,
    operations_api,
    backups_api,
    maintenance_api,
    audit_api,
):
    register_api()

urlpatterns = [
    path("", include("opsportal.health.urls")),
    # One's own second factor (set up, verify, backup codes); before admin/ so it wins.
    path("admin/two-factor/", include("opsportal.accounts.urls")),
    path("admin/", admin.site.urls),
    path("people/", include("opsportal.people.urls")),
    # The REST API (issue 12): endpoints the domain apps register, its schema and docs.
    path("api/", include("opsportal.api.urls")),
    path("incidents/", include("incidents.urls")),
    path("maintenance/", include("maintenance.urls")),
    path("status/", include("opsportal.statuspage.urls")),
]
