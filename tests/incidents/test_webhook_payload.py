"""Issue #17, class 4: the Alertmanager webhook checks the payload against Alertmanager's
format (version 4) and answers 400 naming the first bad field; nothing is recorded from a
payload it refuses, and the body has its own size limit."""

import copy
import json

import pytest
from django.urls import reverse

from incidents.models import Alert, Incident
from tests.incidents.test_alerts import TOKEN, payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def send(client, settings):
    settings.ALERTMANAGER_WEBHOOK_TOKEN = TOKEN
    url = reverse("incidents:alertmanager_webhook")

    def post(body, **extra):
        raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return client.post(
            url, raw, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **extra
        )

    return post


def changed(**alert_changes) -> dict:
    body = copy.deepcopy(payload())
    body["alerts"][0].update(alert_changes)
    return body


def with_top(**changes) -> dict:
    body = copy.deepcopy(payload())
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (with_top(alerts=["firing"]), "alerts[0] must be an object"),
        (with_top(alerts=[None]), "alerts[0] must be an object"),
        (with_top(alerts=None), "alerts must be a list"),
        (with_top(alerts={"a": 1}), "alerts must be a list"),
        (changed(labels=["severity", "critical"]), "alerts[0].labels must be an object"),
        (changed(labels="severity=critical"), "alerts[0].labels must be an object"),
        (changed(annotations=[1, 2]), "alerts[0].annotations must be an object"),
        (with_top(commonLabels=["x"]), "commonLabels must be an object"),
        (with_top(commonLabels="x"), "commonLabels must be an object"),
        (with_top(commonAnnotations=[]), "commonAnnotations must be an object"),
        (changed(annotations={"summary": {"nested": "object"}}), "annotations.summary"),
        (changed(labels={"severity": 1}), "alerts[0].labels.severity must be a string"),
        (changed(fingerprint={"an": "object"}), "alerts[0].fingerprint must be a string"),
        (changed(fingerprint="f" * 129), "alerts[0].fingerprint is over 128"),
        (changed(status="exploded"), "alerts[0].status must be 'firing' or 'resolved'"),
        (changed(generatorURL=["x"]), "alerts[0].generatorURL must be a string"),
        (with_top(version="3"), 'version must be "4"'),
        (with_top(version={"v": 4}), 'version must be "4"'),
        (["not", "an", "object"], "must be a JSON object"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"alerts": [' + "[" * 50_000 + "]" * 50_000 + "]}", "nested too deeply"),
        ("{not json", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (with_top(alerts=[payload()["alerts"][0]] * 1001), "at most 1000"),
    ],
)
def test_a_payload_of_the_wrong_shape_is_a_400_naming_the_field(send, body, names):
    response = send(body)
    assert response.status_code == 400, response.content
    assert names in response.json()["error"]
    assert not Alert.objects.exists()
    assert not Incident.objects.exists()


def test_a_body_over_the_webhook_limit_is_refused_before_it_is_read(send, settings):
    settings.ALERTMANAGER_WEBHOOK_MAX_BYTES = 2048
    body = changed(annotations={"summary": "x", "description": "y" * 4000})
    response = send(body)
    assert response.status_code == 413
    assert "ALERTMANAGER_WEBHOOK_MAX_BYTES" in response.json()["error"]
    assert not Alert.objects.exists()


def test_one_bad_alert_refuses_the_whole_batch(send):
    body = payload()
    body["alerts"].append({"status": "firing", "labels": "oops"})
    assert send(body).status_code == 400
    assert not Alert.objects.exists()


def test_a_well_formed_payload_with_optional_fields_left_out_is_accepted(send):
    body = {"alerts": [{"labels": {"alertname": "DiskFull"}}]}
    response = send(body)
    assert response.status_code == 200, response.content
    assert Alert.objects.get().title == "DiskFull"
