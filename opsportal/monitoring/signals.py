"""Signals monitoring sends, so other shared apps follow it without being called by it."""

from django.dispatch import Signal

# Sent after each collection round has stored its samples and stepped the alert states;
# kwargs: round (services.CollectionRound).
collection_finished = Signal()
