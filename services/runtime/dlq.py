"""Dead letters for operators (`relais dlq list|show|replay`).

A message a consumer could not apply is in its topic `relais.dlq.<consumer>`, with the
original key, value and headers and `relais_dlq_*` headers saying where it came from, after
how many attempts and why (services/runtime/consumer.py). Here they are read without joining
any consumer group (the consumers see nothing), told handled or not by the consumer's inbox,
and replayed: the original record goes back to its original topic with its CloudEvent id, so
every inbox that already has the id skips it."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TextIO

import asyncpg
from aiokafka.errors import KafkaError

from schemas.asyncapi import dead_letter_topic
from services.runtime import db
from services.runtime.events import Message, Record
from services.runtime.transport.base import ReadableTransport

DLQ_PREFIX = "relais_dlq_"
Status = Literal["handled", "unhandled", "unknown"]
USAGE = 2
"""Exit status of a wrong consumer name or dead-letter handle (as argparse's)."""


class Wrong(Exception):
    """A consumer or a handle that does not exist; the message names what does."""


class Refused(Exception):
    """A replay that would do nothing useful (the event is handled) without --force."""


def check_consumer(consumers: Mapping[str, str], name: str | None) -> None:
    if name is not None and name not in consumers:
        raise Wrong(f"no consumer {name!r}; the consumers are: {', '.join(consumers)}")


@dataclass(frozen=True)
class DeadLetter:
    consumer: str
    schema: str
    message: Message
    """The record as it is in the dead-letter topic."""
    status: Status
    """Whether the consumer's inbox has its event ("unknown": no CloudEvent id to look for)."""

    @property
    def handle(self) -> str:
        """Its position in the dead-letter topic, which names it: `partition:offset`."""
        return f"{self.message.partition}:{self.message.offset}"

    def header(self, name: str) -> str | None:
        value = dict(self.message.headers).get(name)
        return None if value is None else value.decode("utf-8", "replace")

    @property
    def event_id(self) -> str | None:
        return self.header("ce_id")

    @property
    def event_type(self) -> str | None:
        return self.header("ce_type")

    @property
    def event_time(self) -> datetime | None:
        """When the event was made (its CloudEvent `time`), if it says."""
        value = self.header("ce_time")
        try:
            return datetime.fromisoformat(value) if value else None
        except ValueError:
            return None

    @property
    def topic(self) -> str:
        return self.header(DLQ_PREFIX + "topic") or "?"

    @property
    def origin(self) -> str:
        """Where it was read from: `topic partition:offset`."""
        return (f"{self.topic} {self.header(DLQ_PREFIX + 'partition') or '?'}:"
                f"{self.header(DLQ_PREFIX + 'offset') or '?'}")

    @property
    def error(self) -> str:
        return self.header(DLQ_PREFIX + "error") or ""

    def original(self) -> Record:
        """The record as it was published: the same key, value and headers (CloudEvent id
        included), without what the dead-lettering added."""
        headers = tuple((n, v) for n, v in self.message.headers if not n.startswith(DLQ_PREFIX))
        return Record(self.topic, self.message.key, self.message.value, headers)


def cloudevent(message: Message) -> dict[str, Any]:
    """The CloudEvent of a binary-mode record in the JSON format (data_base64 when the value
    is not JSON)."""
    event: dict[str, Any] = {n[3:]: v.decode("utf-8", "replace")
                             for n, v in message.headers if n.startswith("ce_")}
    content_type = dict(message.headers).get("content-type")
    if content_type is not None:
        event["datacontenttype"] = content_type.decode("utf-8", "replace")
    try:
        event["data"] = json.loads(message.value)
    except ValueError:
        event["data_base64"] = base64.b64encode(message.value).decode()
    return event


async def handled_ids(dsn: str, schema: str, consumer: str, ids: Sequence[str]) -> set[str]:
    """The event ids among `ids` that are in the consumer's inbox."""
    if not ids:
        return set()
    conn = await db.connect(dsn)
    try:
        rows = await conn.fetch(
            f'SELECT event_id FROM "{schema}".inbox WHERE consumer = $1'
            " AND event_id = ANY($2::text[])", consumer, list(ids))
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return set()  # the service never ran on this database: nothing handled
    finally:
        await conn.close()
    return {r["event_id"] for r in rows}


async def dead_letters(transport: ReadableTransport, dsn: str, consumer: str,
                       schema: str) -> list[DeadLetter]:
    """The dead letters of one consumer, in (partition, offset) order of its DLQ topic."""
    messages = await transport.read_topic(dead_letter_topic(consumer))
    ids = [i for m in messages if (i := dict(m.headers).get("ce_id")) is not None]
    done = await handled_ids(dsn, schema, consumer, sorted({i.decode() for i in ids}))
    letters = []
    for m in messages:
        raw = dict(m.headers).get("ce_id")
        status: Status = ("unknown" if raw is None
                          else "handled" if raw.decode() in done else "unhandled")
        letters.append(DeadLetter(consumer, schema, m, status))
    return letters


def find(letters: Sequence[DeadLetter], consumer: str, handle: str) -> DeadLetter:
    """The dead letter `partition:offset`, or `offset` alone when one partition has it."""
    topic = dead_letter_topic(consumer)
    known = ", ".join(d.handle for d in letters) or "none"
    partition, _, offset = handle.rpartition(":")
    if not offset.isdigit() or (partition and not partition.isdigit()):
        raise Wrong(f"{handle!r} is not a dead letter's PARTITION:OFFSET (as `relais dlq "
                    f"list` shows it); {consumer}'s: {known}")
    found = [d for d in letters if d.message.offset == int(offset)
             and (not partition or d.message.partition == int(partition))]
    if len(found) > 1:
        raise Wrong(f"offset {offset} is in several partitions of {topic}: say which, one of "
                    f"{', '.join(d.handle for d in found)}")
    if not found:
        raise Wrong(f"no dead letter {handle} in {topic}; {consumer}'s: {known}")
    return found[0]


def _first_line(text: str, width: int = 100) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[:width - 3] + "..."


def table(letters: Sequence[DeadLetter]) -> list[str]:
    rows = [("CONSUMER", "DLQ", "FROM", "EVENT ID", "TYPE", "ATTEMPTS", "STATUS", "ERROR")]
    rows += [(d.consumer, d.handle, d.origin, d.event_id or "-", d.event_type or "-",
              d.header(DLQ_PREFIX + "attempts") or "?", d.status, _first_line(d.error))
             for d in letters]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)),
                       row[-1]]).rstrip() for row in rows]


def describe(d: DeadLetter) -> list[str]:
    why = {"handled": f"handled: event {d.event_id} is in {d.schema}.inbox for {d.consumer}",
           "unhandled": f"unhandled: event {d.event_id} is not in {d.schema}.inbox for "
                        f"{d.consumer}",
           "unknown": "unknown: no CloudEvent id (ce_id header), so no inbox to look in"}
    key = d.message.key.decode("utf-8", "replace") if d.message.key is not None else "-"
    lines = [f"dead letter {d.consumer} {d.handle} (topic {dead_letter_topic(d.consumer)}, "
             f"partition {d.message.partition}, offset {d.message.offset})",
             f"status:   {why[d.status]}",
             f"from:     {d.origin}",
             f"attempts: {d.header(DLQ_PREFIX + 'attempts') or '?'}",
             f"key:      {key}",
             "headers:"]
    lines += [f"  {n}: {v.decode('utf-8', 'replace')}" for n, v in d.message.headers
              if n != DLQ_PREFIX + "error"]
    lines += ["event (CloudEvent, JSON format):",
              json.dumps(cloudevent(d.message), indent=2, ensure_ascii=False),
              "error:", d.error]
    return lines


async def replay(transport: ReadableTransport, letters: Sequence[DeadLetter]) -> None:
    """Publish the original records back to their topics, in order (acknowledged on return)."""
    producer = transport.producer()
    await producer.start()
    try:
        await producer.send_batch([d.original() for d in letters])
    finally:
        await producer.stop()


async def run(transport: ReadableTransport, dsn: str, consumers: Mapping[str, str],
              action: str, consumer: str | None = None, handle: str | None = None,
              every: bool = False, force: bool = False, out: TextIO | None = None,
              err: TextIO | None = None, inbox_days: int | None = None) -> int:
    """`consumers`: each consumer's name and the schema of its service (its inbox's).
    `inbox_days` (RELAIS_RETENTION_INBOX_DAYS): an event older than that, less a day, is not
    replayed without `force` (the other consumers of its topic may have forgotten it)."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        check_consumer(consumers, consumer)
    except Wrong as exc:
        print(f"relais: {exc}", file=err)
        return USAGE
    names = [consumer] if consumer else list(consumers)
    try:
        read = await asyncio.gather(*(dead_letters(transport, dsn, name, consumers[name])
                                      for name in names))
    except (OSError, TimeoutError, asyncpg.PostgresError, KafkaError) as exc:
        print(f"relais: the dead letters could not be read: {exc!r}", file=err)
        return 1
    letters = [d for found in read for d in found]
    if action == "list":
        for line in table(letters) if letters else ["no dead letters"]:
            print(line, file=out)
        return 0
    assert consumer is not None
    if action == "show":
        assert handle is not None
        try:
            print("\n".join(describe(find(letters, consumer, handle))), file=out)
        except Wrong as exc:
            print(f"relais: {exc}", file=err)
            return USAGE
        return 0
    try:
        forgotten_before = (None if inbox_days is None else
                            datetime.now(UTC) - timedelta(days=inbox_days - 1))
        chosen = _chosen(letters, consumer, handle, every, force, forgotten_before)
    except Wrong as exc:
        print(f"relais: {exc}", file=err)
        return USAGE
    except Refused as exc:
        print(f"relais: {exc}", file=err)
        return 1
    if not chosen:
        print(f"nothing to replay: {consumer} has no unhandled dead letter", file=out)
        return 0
    try:
        await replay(transport, chosen)
    except (OSError, TimeoutError, asyncpg.PostgresError, KafkaError) as exc:
        print(f"relais: not replayed: {exc!r}", file=err)
        return 1
    for d in chosen:
        print(f"replayed {d.consumer} {d.handle}: event {d.event_id or '-'} "
              f"({d.event_type or 'no type'}) back to {d.topic}", file=out)
    print(f"{len(chosen)} replayed with their CloudEvent ids: every consumer of those topics "
          "gets them again, and its inbox skips what it already applied", file=out)
    return 0


def _chosen(letters: Sequence[DeadLetter], consumer: str, handle: str | None, every: bool,
            force: bool, forgotten_before: datetime | None = None) -> list[DeadLetter]:
    """The dead letters to replay. Without `force`, not one already handled, nor one whose
    event is from before `forgotten_before`: the inbox rows of the other consumers of its
    topic, which would skip it if they applied it, may be pruned by then."""
    def forgotten(d: DeadLetter) -> bool:
        return (forgotten_before is not None and d.event_time is not None
                and d.event_time < forgotten_before)

    if every:  # one per event: an event dead-lettered twice goes back once
        chosen: dict[str | None, DeadLetter] = {}
        for d in letters:
            if d.status == "unhandled" and not forgotten(d):
                chosen.setdefault(d.event_id, d)
        return list(chosen.values())
    assert handle is not None
    one = find(letters, consumer, handle)
    if force:
        return [one]
    if one.status != "unhandled":
        reason = (f"event {one.event_id} is already handled ({one.schema}.inbox has it)"
                  if one.status == "handled" else
                  "it has no CloudEvent id, so no inbox would skip it if it was applied "
                  "(and the consumer would dead-letter it again if it is not a CloudEvent)")
    elif forgotten(one):
        reason = (f"event {one.event_id} is of {one.event_time:%Y-%m-%d}, older than the "
                  "consumers' inbox rows are kept (RELAIS_RETENTION_INBOX_DAYS, less a day): "
                  "another consumer of its topic that applied it may no longer know it")
    else:
        return [one]
    raise Refused(f"{consumer} {one.handle} not replayed: {reason}; --force to replay it "
                  "anyway")
