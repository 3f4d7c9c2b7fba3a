"""How the incident changelist and page render fast: the row estimate instead of a count,
a search's count capped, the timeline's rows built in Python, and elapsed times as a review
reads them. (The changelist's rows are written by opsportal/admin_rows.py, as every
changelist's are.)"""

from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timezone import localtime

# Re-exported: the admin's callers import it from here.
from incidents.durations import elapsed_text as elapsed_text
from incidents.models import Incident, Source, TimelineEvent, TimelineKind

# The incident changelist and page are what responders open during an incident, so they are
# held to the runbook's API target (p95 < 200 ms, bench/incidents_admin.py) with 100,000
# incidents. The pieces below replace per-row work that dominated the profile.

# Above this many rows (PostgreSQL's own estimate) the unfiltered changelist shows the
# planner's row estimate instead of counting every incident on each page view.
ESTIMATED_COUNT_ABOVE = 10_000


# A search matching more incidents than this is paged up to it: counting every match (a
# trigram search matching 20,000 of 100,000 incidents: ~45 ms of a 2-core server) would cost
# more than the page itself; 40 pages of 50 is further than anyone pages through search
# results, and the page says "more than 2000" (narrowing the search shows the rest). Filters
# alone are counted exactly: their counts walk an index, and their deep pages stay reachable.
COUNT_MATCHES_UP_TO = 2_000


class IncidentPaginator(Paginator):
    more_than_counted = False

    def __init__(self, *args, count_up_to: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.count_up_to = count_up_to

    @cached_property
    def count(self) -> int:
        query = getattr(self.object_list, "query", None)
        if query is None:
            return super().count
        if not query.where:
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                        [Incident._meta.db_table],
                    )
                    row = cursor.fetchone()
                if row and row[0] > ESTIMATED_COUNT_ABOVE:
                    return int(row[0])
            return super().count
        if self.count_up_to is None:
            return super().count
        counted = self.object_list.order_by()[: self.count_up_to + 1].count()
        if counted > self.count_up_to:
            self.more_than_counted = True
            return self.count_up_to
        return counted


def timeline_rows(events: list[TimelineEvent]) -> SafeString:
    """The timeline's table rows, built in Python: rendered through the template language,
    200 events took longer than the rest of the incident page together."""
    kinds = dict(TimelineKind.choices)
    sources = dict(Source.choices)

    def row(event: TimelineEvent) -> tuple:
        output = (
            format_html("<details><summary>output</summary><pre>{}</pre></details>", event.output)
            if event.output
            else ""
        )
        return (
            event.kind,
            f"{localtime(event.at):%Y-%m-%d %H:%M:%S}",
            kinds.get(event.kind, event.kind),
            event.actor if event.actor_id else sources.get(event.source, event.source),
            event.message,
            output,
        )

    return format_html_join(
        "\n",
        '<tr class="timeline-event timeline-{}"><td>{}</td><td>{}</td><td>{}</td>'
        "<td>{}{}</td></tr>",
        (row(event) for event in events),
    )
