from opsportal.audit import context
from opsportal.audit.models import AuditSource


class AuditContextMiddleware:
    """Attributes every audit record written during a request to the logged-in user."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        actor = user if user is not None and user.is_authenticated else None
        source = AuditSource.ADMIN if request.path.startswith("/admin/") else AuditSource.API
        with context.acting(actor=actor, source=source, remote_addr=client_address(request)):
            return self.get_response(request)


def client_address(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None
