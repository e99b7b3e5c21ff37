"""The Airbyte destination: spec, check and write, on the CDK's command-line contract."""

from __future__ import annotations

import argparse
import atexit
import gc
import io
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
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
)
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from .batching import Batch, RequestBody
from .client import HeapClient, Verdict
from .config import ApiConfig, HeapConfig, config_error
from .delivery import bad_app_id, redirected
from .messages import Message, dump_json, read_lines, read_messages
from .routing import routes
from .schema_check import check_columns
from .sync import Sync

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
        failures = [
            self._check_api(heap_config, api) for api in {api.endpoint: api for api in heap_config.apis}.values()
        ]
        problems = [failure for failure in failures if failure is not None]
        if problems:
            return AirbyteConnectionStatus(status=Status.FAILED, message="; ".join(problems))
        return AirbyteConnectionStatus(status=Status.SUCCEEDED)

    @staticmethod
    def _check_api(config: HeapConfig, api: ApiConfig) -> str | None:
        """Posts one empty bulk request to an API; what is wrong, or None when Heap accepted it."""
        url = config.endpoint_url(api)
        body = RequestBody(config.app_id, api.items_field)(Batch(0))
        answer = HeapClient(url, config.request_timeout_seconds).post(body)
        if answer.verdict is Verdict.ACCEPTED:
            return None
        if answer.refuses_app_id:
            return bad_app_id(config.app_id, answer).message
        if answer.verdict is Verdict.REDIRECTED:
            return redirected(url, answer).message
        if answer.status is None:
            return f"cannot reach {url}: {answer.detail}"
        return f"Heap answered {answer.describe()} to {url}"

    def write(
        self,
        config: Mapping[str, Any],
        configured_catalog: ConfiguredAirbyteCatalog,
        input_messages: Iterable[AirbyteMessage],
    ) -> Iterable[AirbyteMessage]:
        """Sends the records to Heap, passing each STATE on once the records before it are settled."""
        return self._sync(config, configured_catalog, read_messages(input_messages))

    def _run_write(
        self, config: Mapping[str, Any], configured_catalog_path: str, input_stream: io.TextIOWrapper
    ) -> Iterable[AirbyteMessage]:
        """The CDK's write, reading stdin without building a protocol object for every record."""
        with open(configured_catalog_path, "rb") as catalog_file:
            catalog = ConfiguredAirbyteCatalogSerializer.load(orjson.loads(catalog_file.read()))
        yield from self._sync(config, catalog, read_lines(input_stream.buffer))

    @staticmethod
    def read_config(config_path: str) -> MutableMapping[str, Any]:
        """The config file's JSON object, or a config error saying what the file holds instead."""
        try:
            with open(config_path, "rb") as config_file:
                config = orjson.loads(config_file.read())
        except OSError as error:
            raise config_error(f"Cannot read the config file: {error.strerror}") from None
        except orjson.JSONDecodeError:
            raise config_error("Invalid configuration: the config file is not valid JSON") from None
        HeapConfig.require_object(config)
        return config

    def _sync(
        self, config: Mapping[str, Any], catalog: ConfiguredAirbyteCatalog, messages: Iterable[Message]
    ) -> Iterator[AirbyteMessage | dict[str, Any]]:
        heap_config = HeapConfig.parse({**config, "dry_run": True} if self.dry_run_requested else config)
        found = routes(heap_config, catalog)
        for route in found:
            check_columns(route.api, route.stream)
        yield from Sync(heap_config, found).run(messages)

    def run(self, args: list[str]) -> None:
        """Runs a command, writing each output message as one line; STATE messages go out as the raw JSON
        they came in as, plus destinationStats."""
        init_uncaught_exception_handler(logger)
        atexit.register(PRINT_BUFFER.flush)
        parsed_args = self.parse_args(args)
        gc.freeze()
        dump = AirbyteMessageSerializer.dump
        try:
            for message in self.run_cmd(parsed_args):
                line = dump_json(message) if type(message) is dict else orjson.dumps(dump(message))
                PRINT_BUFFER.write(line.decode() + "\n")
        except AirbyteTracedException as error:
            PRINT_BUFFER.write(_error_line(error) + "\n")
            sys.exit(1)
        finally:
            PRINT_BUFFER.flush()


def _error_line(error: AirbyteTracedException) -> str:
    """An error the connector raised on purpose, as the platform reads it: a TRACE message whose text says
    what happened and what to do, with no Python stack trace (it would add nothing, and could quote data)."""
    message = error.as_airbyte_message()
    message.trace.error.stack_trace = None
    logger.error(error.message)
    return orjson.dumps(AirbyteMessageSerializer.dump(message)).decode()


def run() -> None:
    """The console script's entry point."""
    DestinationHeapAnalytics().run(sys.argv[1:])
