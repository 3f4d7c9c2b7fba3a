"""Delivering one notification: email through Django's mail backend, or a webhook POST."""

from __future__ import annotations

import requests
from django.conf import settings
from django.core.mail import send_mail

from opsportal.people.models import WebhookFormat
from opsportal.systems.log_redaction import secrets_redacted, url_secrets


class DeliveryFailed(Exception):
    pass


def send_email(*, recipient: str, subject: str, body: str) -> None:
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [recipient], fail_silently=False)
    except Exception as exc:
        raise DeliveryFailed(f"Email to {recipient} failed: {exc}") from exc


def _slack_escape(text: str) -> str:
    # Slack reads <…> as links and mentions; its docs ask for exactly these three escapes.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_payload(
    *, format: str, subject: str, body: str, context: dict, links: list | tuple = ()
) -> dict:
    if format == WebhookFormat.SLACK:
        # `text` is the fallback shown in notifications; blocks are the message itself.
        # Slack limits: header 150 characters, section 3000, and rejects empty text.
        blocks = [{"type": "header", "text": {"type": "plain_text", "text": subject[:150]}}]
        if body.strip():
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(body)[:2900]}}
            )
        if links:
            # Link buttons open the URL in the reader's browser (no interactivity endpoint
            # needed); Slack allows 25 elements and 75 characters of button text.
            blocks.append(
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": link["text"][:75]},
                            "url": link["url"],
                            **({"style": link["style"]} if link.get("style") else {}),
                        }
                        for link in links[:25]
                    ],
                }
            )
        return {
            "text": f"*{_slack_escape(subject)}*\n{_slack_escape(body)}".strip(),
            "blocks": blocks,
        }
    return {
        "subject": subject,
        "body": body,
        **({"links": list(links)} if links else {}),
        **context,
    }


def post_webhook(*, name: str, url: str, payload: dict) -> None:
    try:
        # urllib3 logs the request target at DEBUG, and it holds the token.
        with secrets_redacted(*url_secrets(url)):
            response = requests.post(
                url,
                json=payload,
                timeout=settings.NOTIFICATION_WEBHOOK_TIMEOUT,
                headers={"User-Agent": "OpsPortal-notifier"},
            )
    except requests.exceptions.Timeout as exc:
        raise DeliveryFailed(
            f"Webhook {name} did not answer within {settings.NOTIFICATION_WEBHOOK_TIMEOUT:g} s."
        ) from exc
    except requests.exceptions.RequestException as exc:
        # The URL carries the token: name the channel, never the URL.
        raise DeliveryFailed(f"Webhook {name} is not reachable ({type(exc).__name__}).") from exc
    if response.status_code >= 300:
        raise DeliveryFailed(f"Webhook {name} answered HTTP {response.status_code}.")
