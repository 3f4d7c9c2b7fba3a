"""Every call to a system the portal operates on goes through these modules.

Each adapter has explicit timeouts and turns the client library's exceptions into the
errors below, whose message says in words what failed and never carries a secret.
"""
