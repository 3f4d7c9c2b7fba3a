import gc
import os

from django.core.wsgi import get_wsgi_application


def startup_objects_freeze() -> None:
    """Load every URLconf (and with it every admin and view module) now, then move what
    the process holds after start-up out of the garbage collector's reach (gc.freeze).

    A worker holds some 180,000 long-lived objects (modules, URL patterns, templates,
    models' metadata). Pages that allocate a lot (a 200-row list, the API's 200 incidents)
    trigger a full collection every few dozen requests, and each one walked all of them:
    a pause of tens to hundreds of milliseconds, the p95 tail of those pages. Frozen, a
    full collection walks only what requests created."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - the import is the point
    gc.collect()
    gc.freeze()


os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")
application = get_wsgi_application()
startup_objects_freeze()
