"""The Alertmanager webhook's token: in the Authorization header only (a query string lands in
access logs), compared as bytes (a non-ASCII header is a wrong token, not a server error)."""

import json

import pytest
from django.urls import reverse

from incidents.models import Alert
from tests.incidents.test_alerts import TOKEN, payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def url(settings) -> str:
    settings.ALERTMANAGER_WEBHOOK_TOKEN = TOKEN
    return reverse("incidents:alertmanager_webhook")


def post(client, url: str, **extra):
    return client.post(url, json.dumps(payload()), content_type="application/json", **extra)


def test_the_token_in_the_query_string_is_refused(client, url):
    response = post(client, f"{url}?token={TOKEN}")
    assert response.status_code == 401
    assert not Alert.objects.exists()


def test_the_token_in_the_header_is_accepted(client, url):
    response = post(client, url, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert Alert.objects.count() == 1


def test_a_non_ascii_token_is_a_401(client, url):
    for given in ("Bearer \u00fc" + TOKEN[1:], "Bearer \u20ac\u00fc", "B\u00e9arer x"):
        response = post(client, url, HTTP_AUTHORIZATION=given)
        assert response.status_code == 401, given
    assert not Alert.objects.exists()
