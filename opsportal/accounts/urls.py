from django.contrib import admin
from django.urls import path

from opsportal.accounts import views

app_name = "accounts"

# Under /admin/ (the admin's look, its staff check, audited as admin actions); every page
# is about the signed-in user's own second factor.
urlpatterns = [
    path("", admin.site.admin_view(views.overview), name="two_factor"),
    path("setup/", admin.site.admin_view(views.setup), name="two_factor_setup"),
    path("verify/", admin.site.admin_view(views.verify), name="two_factor_verify"),
    path(
        "backup-codes/", admin.site.admin_view(views.backup_codes), name="two_factor_backup_codes"
    ),
]
