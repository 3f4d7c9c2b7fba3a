import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from opsportal.audit import context
from opsportal.audit.models import AuditSource


class Command(BaseCommand):
    help = (
        "Create the 'admin' superuser if no superuser exists. The password comes from "
        "OPSPORTAL_ADMIN_PASSWORD, or is generated and printed once."
    )

    def handle(self, *args, **options):
        user_model = get_user_model()
        if user_model.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin account exists already; nothing to do.")
            return
        password = os.environ.get("OPSPORTAL_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        username = os.environ.get("OPSPORTAL_ADMIN_USERNAME", "admin")
        with context.acting(source=AuditSource.CLI):
            user_model.objects.create_superuser(username=username, email="", password=password)
        if os.environ.get("OPSPORTAL_ADMIN_PASSWORD"):
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created admin account {username!r} with the password from "
                    "OPSPORTAL_ADMIN_PASSWORD."
                )
            )
        else:
            self.stdout.write(
                self.style.WARNING(
                    f"Created admin account {username!r} with password: {password}\n"
                    "It is shown only this once: note it now, or change it in the admin."
                )
            )
