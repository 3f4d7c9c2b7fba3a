"""Pieces the fault drills share: the drill test (tests/drills/) and the long benchmark
(bench/drills.py). The platform copy's slow API, files put into a container, and the
operator's way through the admin from a firing alert to the fix, counting the forms the
operator submits."""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.previewing import preview_token_of

# The drills' API: latency and error rate come from /run/fault (a tmpfs: a restart clears
# it, as restarting a degraded service clears its state).
CGI = r"""#!/bin/sh
d=0; [ -f /run/fault/delay ] && d=$(cat /run/fault/delay)
e=0; [ -f /run/fault/error_percent ] && e=$(cat /run/fault/error_percent)
[ "$d" != 0 ] && sleep "$d"
if [ "$e" -gt 0 ] && [ $((RANDOM % 100)) -lt "$e" ]; then
  printf 'Status: 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\nunavailable\n'
  exit 0
fi
printf 'Content-Type: application/json\r\n\r\n{"ok": true}\n'
"""


def put_files(container, files: dict[str, tuple[str, int]]) -> None:
    """Copy {path: (text, mode)} into a created container (before it starts)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        parents = {str(d) for path in files for d in Path(path).parents if str(d) != "."}
        for directory in sorted(parents):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    container.put_archive("/", buffer.getvalue())


def slow_api_container(docker_client, *, image: str, name: str, port: int, labels=None):
    """busybox httpd serving the CGI above on 127.0.0.1:`port`, started."""
    container = docker_client.containers.create(
        image,
        ["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"],
        name=name,
        labels=labels or {},
        network_mode="host",
        tmpfs={"/run/fault": "size=1m"},
        mem_limit="32m",
    )
    put_files(container, {"www/cgi-bin/api": (CGI, 0o755)})
    container.start()
    return container


@dataclass
class OperatorPath:
    """What the operator's way from the overview to a mitigated incident took."""

    operation: object = None
    posts: int = 0
    pages: list[str] = field(default_factory=list)


def run_fix_from_overview(
    client, *, incident, step_text: str, overrides: dict | None = None, execute
) -> OperatorPath:
    """The operator's way, through the admin as a signed-in user: open the overview, follow
    the firing alert's link to the incident's runbook step (system and container chosen from
    the alert), confirm with a reason (POST 1), the operation runs (`execute(pk)`: the real
    task), then "Mark mitigated" on the incident page (POST 2). Returns the path with the
    number of form submissions it took.

    `overrides` are typed into the form, as an operator adjusting a field would (each still a
    field of the same form: no extra submission)."""
    import re

    from incidents.models import IncidentStep
    from opsportal.operations.forms import PREFIX

    path = OperatorPath()
    overview = client.get("/admin/")
    assert overview.status_code == 200, overview.status_code
    path.pages.append("/admin/")
    step = IncidentStep.objects.get(incident=incident, text=step_text)
    link = f"/admin/incidents/incident/{incident.pk}/steps/{step.pk}/run/"
    # The firing alert's button on the overview opens this step with its system chosen.
    found = re.search(rf'href="({re.escape(link)}\?[^"]*)"', overview.content.decode())
    assert found, f"the overview offers no prefilled link to {step_text!r} from the alert"
    url = found.group(1).replace("&amp;", "&")
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    path.pages.append(url)
    form = page.context["form"]
    data = {name: form[name].value() for name in form.fields}
    data = {k: ("" if v is None else v) for k, v in data.items()}
    for name, value in (overrides or {}).items():
        data[PREFIX + name] = value
    data["reason"] = f"{step_text} (from the firing alert)"
    # Confirmed against the preview the page showed (again if the overrides changed it).
    data["preview_token"] = preview_token_of(page) or ""
    confirmed = client.post(link, data)
    path.posts += 1
    token = preview_token_of(confirmed) if confirmed.status_code == 200 else None
    if token and token != data["preview_token"]:  # a new preview to confirm: one more form
        confirmed = client.post(link, {**data, "preview_token": token})
        path.posts += 1
    assert confirmed.status_code == 302, confirmed.context["form"].errors
    step.refresh_from_db()
    operation = step.last_operation
    execute(operation.pk)
    operation.refresh_from_db()
    path.operation = operation
    if operation.status == "succeeded":
        incident_page = client.get(f"/admin/incidents/incident/{incident.pk}/change/")
        # A change that succeeded is offered "Mark mitigated" on the spot.
        assert 'id="mark-mitigated"' in incident_page.content.decode()
        mitigated = client.post(
            f"/admin/incidents/incident/{incident.pk}/mark-mitigated/",
            {"note": f"{step_text} succeeded"},
        )
        path.posts += 1
        assert mitigated.status_code == 302
    return path
