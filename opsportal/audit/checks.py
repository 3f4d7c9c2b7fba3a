"""Start-up checks of the settings the audit trail depends on."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from opsportal.audit.middleware import trusted_proxy_networks


@register(Tags.security)
def check_trusted_proxies(app_configs, **kwargs) -> list:
    try:
        trusted_proxy_networks(tuple(settings.TRUSTED_PROXIES))
    except ValueError as exc:
        return [
            Error(
                f"TRUSTED_PROXIES: {exc}.",
                hint="List the reverse proxies' addresses as IPs or CIDRs, comma-separated.",
                id="audit.E001",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_client_address_behind_a_proxy(app_configs, **kwargs) -> list:
    if settings.SECURE_PROXY_SSL_HEADER and settings.TRUSTED_PROXY_COUNT <= 0:
        return [
            Warning(
                "BEHIND_TLS_PROXY is on but TRUSTED_PROXY_COUNT is 0: every client has the "
                "proxy's address, so one person's failed logins lock everyone out and audit "
                "records name the proxy.",
                hint="Set TRUSTED_PROXY_COUNT=1 (and TRUSTED_PROXIES to the proxy's address).",
                id="audit.W001",
            )
        ]
    return []
