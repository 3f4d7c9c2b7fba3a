"""Signals of the people layer, for domain apps to subscribe to (the shared layer imports
none of them)."""

from django.dispatch import Signal

# Sent after each delivery attempt of a notification, with `notification` (its status,
# attempts and last_error as the attempt left them). Incidents records failed pages on
# the incident's timeline.
notification_attempted = Signal()
