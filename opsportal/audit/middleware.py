import functools
import ipaddress

from django.conf import settings
from ipware import get_client_ip

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


@functools.lru_cache(maxsize=8)
def trusted_proxy_networks(
    proxies: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """TRUSTED_PROXIES as networks; a bad entry raises ValueError (the audit app's system
    check reports it at start-up)."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in proxies)


def _from_trusted_proxy(remote_addr: str | None) -> bool:
    proxies = tuple(settings.TRUSTED_PROXIES)
    if not proxies:
        return True  # no list: whatever connects is the proxy (the portal listens only for it)
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    return any(address in network for network in trusted_proxy_networks(proxies))


def client_address(request) -> str | None:
    """The client's address: the connection's, or behind TRUSTED_PROXY_COUNT reverse proxies
    the one the outermost of them put into X-Forwarded-For. django-axes locks out by this
    address (AXES_CLIENT_IP_CALLABLE) and every audit record carries it."""
    remote_addr = request.META.get("REMOTE_ADDR") or None
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0 or not _from_trusted_proxy(remote_addr):
        return remote_addr
    # Each proxy appends the address it was connected from, so the client is the count-th
    # entry from the right; entries further left are whatever the client sent. ipware counts
    # only the proxies whose own address is in the header (the nearest one's is REMOTE_ADDR),
    # hence count - 1; strict=False accepts a longer, client-prefixed chain.
    address, _ = get_client_ip(
        request,
        proxy_count=count - 1,
        request_header_order=["HTTP_X_FORWARDED_FOR"],
        strict=False,
    )
    return address or remote_addr
