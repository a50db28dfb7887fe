"""``eventcore streams``: list streams, show one stream's events, tail the global log.

Every subcommand only reads: the store must exist, and nothing is written to it.
Output is one line per stream or event (``--json``: one JSON object per line).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from eventcore.cli._common import Failure, database_url_option, run
from eventcore.store import EventStore, StreamLister, StreamSummary
from eventcore.types import RecordedEvent

_PAGE = click.IntRange(1, 10_000)


@click.group()
def streams() -> None:
    """List streams, show a stream's events, follow the global log."""


@streams.command("list")
@database_url_option()
@click.option("--prefix", default=None, help="only streams whose id starts with this")
@click.option("--after", default=None, metavar="STREAM", help="start after this stream id")
@click.option("--limit", type=_PAGE, default=100, show_default=True, help="streams per page")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def list_streams(
    database_url: str, prefix: str | None, after: str | None, limit: int, as_json: bool
) -> None:
    """The streams that have events, in id order, with their versions."""
    page = run(_with_store(database_url, lambda s: _list(s, prefix, after, limit)))
    for summary in page:
        if as_json:
            _echo_json({"stream_id": summary.stream_id, "version": summary.version})
        else:
            click.echo(f"{summary.stream_id}\tv{summary.version}")
    if len(page) == limit:
        click.echo(f"more: --after {page[-1].stream_id!r}", err=True)


async def _list(
    store: EventStore, prefix: str | None, after: str | None, limit: int
) -> list[StreamSummary]:
    if not isinstance(store, StreamLister):
        raise Failure(f"{type(store).__name__} cannot list its streams")
    return await store.list_streams(prefix=prefix, after=after, limit=limit)


@streams.command("show")
@database_url_option()
@click.argument("stream")
@click.option("--from-version", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--limit", type=_PAGE, default=100, show_default=True, help="events per page")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def show(database_url: str, stream: str, from_version: int, limit: int, as_json: bool) -> None:
    """A stream's events: version, position, type, time and payload (JSON)."""

    async def read(store: EventStore) -> tuple[list[RecordedEvent], int]:
        events = await store.read_stream(stream, from_version=from_version, limit=limit)
        return events, await store.stream_version(stream)

    events, version = run(_with_store(database_url, read))
    if version == 0:
        raise Failure(f"stream {stream!r} has no events (eventcore streams list shows them)")
    for event in events:
        _print_event(event, as_json)
    if events and events[-1].stream_version < version:
        click.echo(f"more: --from-version {events[-1].stream_version + 1}", err=True)


@streams.command("tail", epilog="Follows until Ctrl-C, which ends it with exit code 0.")
@database_url_option()
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=None,
    metavar="POSITION",
    help="start after this global position (default: the last 10 events)",
)
@click.option("--prefix", default=None, help="only streams whose id starts with this")
@click.option("--pattern", default=None, help="only streams matching this glob (* ? [])")
@click.option("--type", "event_types", multiple=True, help="only this event type; repeatable")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def tail(
    database_url: str,
    after: int | None,
    prefix: str | None,
    pattern: str | None,
    event_types: tuple[str, ...],
    as_json: bool,
) -> None:
    """Print the global log's events, then each new one as it commits."""

    async def follow_log(store: EventStore) -> None:
        from eventcore.subscription import follow

        start = after if after is not None else max(0, await store.head_position() - 10)
        async for event in follow(
            store,
            after=start,
            stream_prefix=prefix,
            stream_pattern=pattern,
            event_types=event_types or None,
        ):
            _print_event(event, as_json)

    try:
        run(_with_store(database_url, follow_log))
    except KeyboardInterrupt:
        click.echo("stopped", err=True)


async def _with_store(url: str, work: Callable[[EventStore], Any]) -> Any:
    from eventcore.cli._stores import open_existing

    store = await open_existing(url)
    try:
        return await work(store)
    finally:
        await store.close()


def _print_event(event: RecordedEvent, as_json: bool) -> None:
    payload = event.payload.decode("utf-8", errors="replace")
    at = event.recorded_at.isoformat(timespec="milliseconds")
    if as_json:
        try:
            decoded: Any = json.loads(payload)
        except ValueError:
            decoded = payload
        _echo_json(
            {
                "position": event.global_position,
                "stream_id": event.stream_id,
                "version": event.stream_version,
                "type": event.event_type,
                "recorded_at": at,
                "event_id": str(event.event_id),
                "payload": decoded,
            }
        )
        return
    click.echo(
        f"#{event.global_position}\t{event.stream_id}\tv{event.stream_version}\t"
        f"{at}\t{event.event_type}\t{payload}"
    )


def _echo_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, ensure_ascii=False))
    sys.stdout.flush()
