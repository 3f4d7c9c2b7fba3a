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

An exchange's table of bindings has the same problem: kombu creates the table file empty
and only then locks and fills it, so a second process declaring the same queue at that
moment reads nothing and dies on the same JSONDecodeError (and its first writer's
truncating open can wipe a binding just written). Here bindings change under a lock file
of their own and the new table replaces the old one in one rename: a reader sees the old
table or the new one, never a partial one.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import os
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
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
        # Tables are replaced whole (below); an empty file can only be one left by kombu's
        # own writer, and it means no bindings yet, not a crash.
        try:
            return super().get_table(exchange)
        except ValueError:
            return []

    @contextmanager
    def _table_lock(self, exchange):
        table = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        with open(table.with_name(table.name + ".lock"), "ab") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield table
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _change_table(self, exchange, change: Callable[[list], list]) -> None:
        """Read the exchange's bindings, apply `change`, and put the new table in place
        with one rename, all under the exchange's lock file."""
        with self._table_lock(exchange) as table:
            queues = self.get_table(exchange)
            changed = change(list(queues))
            if changed == queues:
                return
            staged = table.with_name(f".{table.name}.{uuid.uuid4().hex}")
            try:
                staged.write_bytes(str_to_bytes(dumps(changed)))
                os.replace(staged, table)
            except OSError as exc:
                staged.unlink(missing_ok=True)
                raise filesystem.ChannelError(f"Cannot write {table}: {exc}") from exc

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._change_table(
            exchange, lambda queues: queues if binding in queues else [binding, *queues]
        )

    def _delete(self, queue, exchange, routing_key, pattern, *args, **kwargs):
        # The virtual channel's own bookkeeping (kombu's filesystem._delete calls it first),
        # then the table without the binding.
        super(filesystem.Channel, self)._delete(
            queue, exchange, routing_key, pattern, *args, **kwargs
        )
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._change_table(exchange, lambda queues: [q for q in queues if q != binding])


class Transport(filesystem.Transport):
    Channel = Channel
    driver_type = "filesystem"
    driver_name = "opsportal-filesystem"
