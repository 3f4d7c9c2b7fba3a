"""Posting a changing operation's confirmation page as a person does: the first post shows
the preview of what it does now (opsportal.operations.previews); the person confirms it."""

from __future__ import annotations

import re

_TOKEN = re.compile(r'name="preview_token" value="([^"]*)"')


def preview_token_of(response) -> str | None:
    """The preview token a confirmation page carries, or None when it shows no preview."""
    found = _TOKEN.search(response.content.decode())
    return found.group(1) if found else None


def post_confirmed(client, url: str, data: dict, **kwargs):
    """Post the form; when the page answers with a (new) preview to confirm, confirm it
    (post again with its token) and return that response."""
    response = client.post(url, data, **kwargs)
    token = preview_token_of(response) if response.status_code == 200 else None
    if token and token != data.get("preview_token"):
        response = client.post(url, {**data, "preview_token": token}, **kwargs)
    return response
