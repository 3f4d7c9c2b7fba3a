"""opsportal/actors.py: who is acting, a person or the portal itself."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from opsportal.actors import acting_name, acting_user


def test_no_person_is_acting_for_the_system_an_anonymous_visitor_or_an_unsaved_user():
    for actor in (None, AnonymousUser(), get_user_model()(username="not-saved"), object()):
        assert acting_user(actor) is None
        assert acting_name(actor, otherwise="the system") == "the system"


@pytest.mark.django_db
def test_a_saved_user_is_the_one_acting():
    user = get_user_model().objects.create_user("ada", "ada@example.com", "pw-ada-123!")
    assert acting_user(user) is user
    assert acting_name(user, otherwise="the system") == "ada"
