"""The Airbyte destination: spec, check and write, on the CDK's command-line contract."""

from __future__ import annotations

import argparse
import atexit
import gc
import io
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson
from airbyte_cdk.destinations import Destination
from airbyte_cdk.exception_handler import init_uncaught_exception_handler
from airbyte_cdk.logger import PRINT_BUFFER
from airbyte_cdk.models import (
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteMessageSerializer,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteCatalogSerializer,
    Status,
    Type,
)
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from .batching import Batch, RequestBody
from .client import HeapClient, Verdict
from .config import HeapConfig
from .schema_check import check_columns
from .sync import InvalidLine, Message, Sync, single_stream

logger = logging.getLogger("airbyte")


class DestinationHeapAnalytics(Destination):
    """Loads one Airbyte stream into Heap's track, add_user_properties or add_account_properties API."""

    dry_run_requested = False

    def parse_args(self, args: list[str]) -> argparse.Namespace:
        """The CDK's arguments, plus `--dry-run` for `write`: map and batch, send nothing."""
        self.dry_run_requested = "--dry-run" in args
        return super().parse_args([arg for arg in args if arg != "--dry-run"])

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        """Validates the config, then posts one empty bulk request, which creates nothing in Heap."""
        try:
            heap_config = HeapConfig.parse(config)
        except AirbyteTracedException as error:
            return AirbyteConnectionStatus(status=Status.FAILED, message=error.message)
        url = heap_config.endpoint_url
        body = RequestBody(heap_config.app_id, heap_config.api.items_field)(Batch(0))
        answer = HeapClient(url, heap_config.request_timeout_seconds).post(body)
        if answer.verdict is Verdict.ACCEPTED:
            return AirbyteConnectionStatus(status=Status.SUCCEEDED)
        if answer.verdict is Verdict.BAD_APP_ID:
            message = (
                f"Heap rejected app_id '{heap_config.app_id}': check the environment id under "
                f"Account > Manage > Projects ({answer.describe()})"
            )
        elif answer.status is None:
            message = f"cannot reach {url}: {answer.text}"
        else:
            message = f"Heap answered {answer.describe()} to {url}"
        return AirbyteConnectionStatus(status=Status.FAILED, message=message)

    def write(
        self,
        config: Mapping[str, Any],
        configured_catalog: ConfiguredAirbyteCatalog,
        input_messages: Iterable[AirbyteMessage],
    ) -> Iterable[AirbyteMessage]:
        """Sends the records to Heap, passing each STATE on once the records before it are settled."""
        return self._sync(config, configured_catalog, _from_messages(input_messages))

    def _run_write(
        self, config: Mapping[str, Any], configured_catalog_path: str, input_stream: io.TextIOWrapper
    ) -> Iterable[AirbyteMessage]:
        """The CDK's write, reading stdin without building a protocol object for every record."""
        with open(configured_catalog_path, "rb") as catalog_file:
            catalog = ConfiguredAirbyteCatalogSerializer.load(orjson.loads(catalog_file.read()))
        yield from self._sync(config, catalog, _from_lines(input_stream.buffer))

    def _sync(
        self, config: Mapping[str, Any], catalog: ConfiguredAirbyteCatalog, messages: Iterable[Message]
    ) -> Iterator[AirbyteMessage]:
        heap_config = HeapConfig.parse({**config, "dry_run": True} if self.dry_run_requested else config)
        stream = single_stream(catalog)
        check_columns(heap_config.api, stream)
        sync = Sync(heap_config, stream)
        logger.info("Loading stream '%s' into %s", sync.stream_name, heap_config.endpoint_url)
        yield from sync.run(messages)

    def run(self, args: list[str]) -> None:
        """Runs a command, writing each output message as one line."""
        init_uncaught_exception_handler(logger)
        atexit.register(PRINT_BUFFER.flush)
        parsed_args = self.parse_args(args)
        gc.freeze()
        dump = AirbyteMessageSerializer.dump
        try:
            for message in self.run_cmd(parsed_args):
                PRINT_BUFFER.write(orjson.dumps(dump(message)).decode() + "\n")
        finally:
            PRINT_BUFFER.flush()


def _from_messages(messages: Iterable[AirbyteMessage]) -> Iterator[Message]:
    for message in messages:
        if message.type == Type.RECORD:
            yield (message.record.stream, message.record.data, message.record.emitted_at)
        elif message.type == Type.STATE:
            yield message


def _from_lines(lines: Iterable[bytes]) -> Iterator[Message]:
    load = AirbyteMessageSerializer.load
    for number, line in enumerate(lines, start=1):
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            message = _lenient_json(line)
            if message is None:
                if line.strip():
                    yield InvalidLine(number)
                continue
        kind = message.get("type") if type(message) is dict else None
        if kind == "RECORD":
            record = message["record"]
            yield (record["stream"], record["data"], record["emitted_at"])
        elif kind == "STATE":
            yield load(message)


def _lenient_json(line: bytes) -> Any:
    """Parses what orjson refuses but Python's json reads (NaN, Infinity), else None."""
    try:
        return json.loads(line)
    except ValueError:
        return None


def run() -> None:
    """The console script's entry point."""
    DestinationHeapAnalytics().run(sys.argv[1:])
