"""Signals the systems layer sends, so domain apps can react without it importing them."""

from django.dispatch import Signal

# Sent once when a system is registered (its row first saved), whatever the path: the admin,
# a service, a configuration import. Keyword argument: `system`, the specific subclass
# (PostgresDatabase, DockerEngine, ...). Backups subscribes to give a new database its plan.
system_registered = Signal()
