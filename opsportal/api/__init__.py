"""The REST API's shared machinery (issue 12): personal API tokens, their authentication,
the permission classes that map to the admin's Django permissions, per-token throttling,
the one error body, pagination, the router every domain app registers its endpoints with,
and the OpenAPI schema and its docs page.

The shared layer imports no domain app: incidents/api.py, backups/api.py, maintenance/api.py
(and the shared apps' api.py) register their viewsets with `opsportal.api.routing.api_register`
when opsportal/urls.py loads, so only the web process imports the REST framework.
"""
