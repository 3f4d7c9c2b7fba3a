"""The try-out's embedded Celery broker: kombu's filesystem transport, made safe for several
producers and consumers at once.

kombu's own filesystem transport creates the message file in the queue directory and only
then serializes and writes the message, so a consumer can pick up a file that is still
empty (for milliseconds when the message is large) and die on
`JSONDecodeError('Expecting value: line 1 column 1 (char 0)')` (kombu issue #1551, open);
the message is lost with it. Its consumer also "moves" a taken file into the system's temp
directory, which is a copy plus a delete when that is another filesystem, so two consumers
can both take one message.

Here a message becomes visible only when complete: it is written under a staging directory
and renamed into the queue directory (rename is atomic within one filesystem). A consumer
takes a message by renaming it into its own claimed directory, next to the queue: exactly
one consumer's rename succeeds. A file that is not a message (left by an older writer) is
set aside in a rejected directory and logged, never fatal to the worker.
"""

from __future__ import annotations

import collections
import logging
import os
import time
import uuid
from pathlib import Path
from queue import Empty

from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

logger = logging.getLogger(__name__)


class Channel(filesystem.Channel):
    def _sibling_folder(self, option: str, name: str) -> str:
        # Next to the queue directory by default: the renames must stay on one filesystem.
        folder = self.transport_options.get(option) or str(Path(self.data_folder_out).parent / name)
        os.makedirs(folder, exist_ok=True)
        return folder

    @cached_property
    def staging_folder(self) -> str:
        return self._sibling_folder("staging_folder", "staging")

    @cached_property
    def claimed_folder(self) -> str:
        return self._sibling_folder("claimed_folder", "claimed")

    @cached_property
    def rejected_folder(self) -> str:
        return self._sibling_folder("rejected_folder", "rejected")

    def _put(self, queue, payload, **kwargs):
        """Write the whole message aside, then rename it into the queue in one step."""
        # Wall-clock microseconds, zero-padded, so names sort in publishing order (also
        # across a reboot, which resets the monotonic clock kombu uses).
        name = f"{time.time_ns() // 1000:020d}_{uuid.uuid4()}.{queue}.msg"
        staged = os.path.join(self.staging_folder, name)
        try:
            with open(staged, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(staged, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add {name!r} to the queue: {exc}") from exc

    @cached_property
    def _listed(self) -> dict[str, collections.deque[str]]:
        return collections.defaultdict(collections.deque)

    def _get(self, queue):
        """Take the oldest message of `queue` that no other consumer took first.

        The queue directory is listed once per batch, not once per message (kombu's lists
        and sorts it for every message: thousands queued made each take milliseconds)."""
        listed = self._listed[queue]
        if not listed:
            wanted = f"{queue}.msg"
            listed.extend(
                sorted(n for n in os.listdir(self.data_folder_in) if n.partition(".")[2] == wanted)
            )
        while listed:
            name = listed.popleft()
            claimed = os.path.join(self.claimed_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except FileNotFoundError:
                continue  # another consumer took it first
            except OSError as exc:
                raise filesystem.ChannelError(f"Cannot take {name!r}: {exc}") from exc
            with open(claimed, "rb") as handle:
                body = handle.read()
            try:
                payload = loads(bytes_to_str(body))
            except ValueError:
                os.replace(claimed, os.path.join(self.rejected_folder, name))
                logger.error(
                    "Broker file %s is not a message (%d bytes); set aside in %s",
                    name,
                    len(body),
                    self.rejected_folder,
                )
                continue
            if self.store_processed:
                os.replace(claimed, os.path.join(self.processed_folder, name))
            else:
                os.remove(claimed)
            return payload
        raise Empty()

    def get_table(self, exchange):
        # kombu creates an exchange's table file and then locks and writes it; a reader in
        # between finds it empty. An empty table is no bindings yet, not a crash.
        try:
            return super().get_table(exchange)
        except ValueError:
            return []


class Transport(filesystem.Transport):
    Channel = Channel
    driver_type = "filesystem"
    driver_name = "opsportal-filesystem"
