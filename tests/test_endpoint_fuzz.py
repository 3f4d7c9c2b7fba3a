"""Issue #17, kept that way: the machine endpoints under Hypothesis.

The Alertmanager webhook gets payloads drawn over its format (version 4): every field may be
of the right shape or any JSON value at all (nested lists and objects, numbers, null), the
alerts list may hold non-objects, and the top level may not be an object. The answer is a
200 that records each alert, or a 400 that names what is wrong; never a server error, and a
refused payload records nothing. /health/detailed and /metrics get arbitrary Authorization
headers (any Unicode, control characters, huge): a 401 or the page, never a server error.

Budgets (max_examples) are explicit; with them the module runs in about 30 s on two cores.
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incidents.models import Alert

pytestmark = pytest.mark.django_db

WEBHOOK_EXAMPLES = 150
TOKEN_EXAMPLES = 60
TOKEN = "fuzz-token-0123456789"
RELAXED = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
    database=None,
)

any_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
string_map = st.dictionaries(
    st.sampled_from(["alertname", "severity", "category", "system", "summary", "runbook"])
    | st.text(max_size=20),
    st.text(max_size=60),
    max_size=6,
)
status = st.sampled_from(["firing", "resolved"])


def either(right):
    """Mostly the right shape, sometimes any JSON value in its place."""
    return st.one_of(right, right, right, any_json)


alert = st.fixed_dictionaries(
    {},
    optional={
        "status": either(status),
        "labels": either(string_map),
        "annotations": either(string_map),
        "startsAt": either(st.just("2026-11-27T00:00:00Z")),
        "endsAt": either(st.just("0001-01-01T00:00:00Z")),
        "generatorURL": either(st.text(max_size=80)),
        "fingerprint": either(st.text(alphabet="0123456789abcdef", max_size=20)),
    },
)
payload = st.fixed_dictionaries(
    {"alerts": either(st.lists(either(alert), max_size=4))},
    optional={
        "version": either(st.just("4")),
        "status": either(status),
        "receiver": either(st.text(max_size=20)),
        "groupLabels": either(string_map),
        "commonLabels": either(string_map),
        "commonAnnotations": either(string_map),
        "externalURL": either(st.text(max_size=40)),
    },
)
body = st.one_of(payload, payload, payload, any_json)


@pytest.fixture
def tokens(settings):
    settings.ALERTMANAGER_WEBHOOK_TOKEN = TOKEN
    settings.HEALTH_TOKEN = TOKEN
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_PUBLIC = False


@given(document=body)
@settings(RELAXED, max_examples=WEBHOOK_EXAMPLES)
def test_the_webhook_answers_every_payload_with_200_or_a_named_400(client, tokens, document):
    before = Alert.objects.count()
    response = client.post(
        reverse("incidents:alertmanager_webhook"),
        json.dumps(document),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
    )
    assert response.status_code in (200, 400), (response.status_code, document)
    answer = response.json()
    if response.status_code == 400:
        assert answer["error"].startswith("Not Alertmanager's webhook JSON (version 4): ")
        assert Alert.objects.count() == before  # a refused payload records nothing
    else:
        assert answer["received"] == len(document["alerts"])


header = st.one_of(
    st.text(max_size=300),
    st.text(max_size=300).map(lambda t: f"Bearer {t}"),
    st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=40),
    st.just("Bearer " + TOKEN + "\u00fc"),
    st.just("Bearer " + "x" * 100_000),
)


@pytest.mark.parametrize("path", ["/health/detailed", "/metrics", "/incidents/alertmanager/"])
@given(authorization=header)
@settings(RELAXED, max_examples=TOKEN_EXAMPLES)
def test_token_endpoints_answer_any_authorization_header(client, tokens, path, authorization):
    if path.startswith("/incidents/"):
        response = client.post(
            path, "{}", content_type="application/json", HTTP_AUTHORIZATION=authorization
        )
    else:
        response = client.get(path, HTTP_AUTHORIZATION=authorization)
    assert response.status_code in (200, 401, 403, 503), (response.status_code, authorization)
    if response.status_code == 200 and path != "/health/detailed":
        pytest.fail(f"{path} accepted the header {authorization!r}")
