"""The Airbyte destination: spec, check and write, on the CDK's command-line contract."""

from __future__ import annotations

import argparse
import atexit
import gc
import io
import logging
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
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
from airbyte_protocol_dataclasses.models import AirbyteMessage as ProtocolMessage

from .activation import catalog_message, protocol_json
from .batching import Batch, RequestBody
from .changes import FOLDER, snapshot_file, writable_folder
from .client import Answer, HeapClient, Verdict
from .config import HeapConfig, LocalSnapshot, ObjectStorageSnapshot, S3Storage, TrackApi, config_error
from .deletion import DeletionClient
from .delivery import CONFIG_FAULTS, redirected, unreachable
from .messages import LineReader, ObjectReader, polled_lines, ticking
from .rejected import StoreError, check_store, store_for
from .routing import routes
from .schema_check import check_columns
from .sync import TICK_SECONDS, Sync

logger = logging.getLogger("airbyte")

YOUNG_OBJECTS_BEFORE_COLLECTION = 50_000
"""New objects, net of those freed, before the cyclic garbage collector runs: more than a sync holds while
its batches are in flight, so records and items, freed as they are sent, are never traversed (at Python's
700, collections took about a twentieth of a sync's CPU); garbage cycles, which are rare, are still
collected."""

CHECKED = (
    "Column names are checked against each stream's schema when a sync starts (check has no catalog): to try "
    "a mapping on real records before loading anything, run write --dry-run."
)
NO_SUCH_APP_ID = "0"
"""An app id no Heap environment has (their ids count from 1): what Heap answers for it is what it answers an
unknown app id, whatever its words."""
TOKEN_EDGE = r"(?<![0-9A-Za-z_]){}(?![0-9A-Za-z_])"


class DestinationHeapAnalytics(Destination):
    """Loads Airbyte streams into Heap's track, add_user_properties and add_account_properties APIs."""

    dry_run_requested = False

    def parse_args(self, args: list[str]) -> argparse.Namespace:
        """The CDK's commands and arguments, plus `--dry-run` for `write`: map and batch, send nothing."""
        parser = argparse.ArgumentParser(prog="destination-heap-analytics")
        commands = parser.add_subparsers(title="commands", dest="command", required=True)
        commands.add_parser("spec", help="prints the configuration specification")
        check = commands.add_parser("check", help="checks the config: the app id, the endpoint, the options")
        check.add_argument("--config", required=True, help="path to the JSON configuration file")
        write = commands.add_parser("write", help="loads the records read on standard input into Heap")
        write.add_argument("--config", required=True, help="path to the JSON configuration file")
        write.add_argument("--catalog", required=True, help="path to the configured catalog JSON file")
        write.add_argument(
            "--dry-run", action="store_true", help="map and batch every record, send nothing, pass no STATE"
        )
        discover = commands.add_parser("discover", help="prints the Heap objects streams can be mapped to")
        discover.add_argument("--config", required=True, help="path to the JSON configuration file")
        parsed = parser.parse_args(args)
        self.dry_run_requested = getattr(parsed, "dry_run", False)
        return parsed

    def run_cmd(self, parsed_args: argparse.Namespace) -> Iterable[AirbyteMessage]:
        """The CDK's commands, with the config validated by the connector's own rules first, so a mistake is
        reported in the connector's words (naming the option and the fix) rather than the spec validator's."""
        if parsed_args.command == "discover":
            yield catalog_message(HeapConfig.parse(self.read_config(parsed_args.config)))
            return
        if parsed_args.command in ("check", "write"):
            try:
                HeapConfig.parse(self.read_config(parsed_args.config))
            except AirbyteTracedException as error:
                if parsed_args.command != "check":
                    raise
                status = AirbyteConnectionStatus(status=Status.FAILED, message=error.message)
                yield AirbyteMessage(type=Type.CONNECTION_STATUS, connectionStatus=status)
                return
        yield from super().run_cmd(parsed_args)

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        """Validates the config, then posts one empty bulk request, which creates nothing in Heap."""
        try:
            heap_config = HeapConfig.parse(config)
        except AirbyteTracedException as error:
            return AirbyteConnectionStatus(status=Status.FAILED, message=error.message)
        probes = dict.fromkeys(api.probe for api in heap_config.apis) or {
            (TrackApi.endpoint, TrackApi.items_field): None
        }
        problems, found = [], []
        for endpoint, items_field in probes:
            problem, finding = self._check_app_id(heap_config, endpoint, items_field)
            if problem is not None:
                problems.append(problem)
            elif finding not in found:
                found.append(finding)
        if isinstance(heap_config.object_storage_config, S3Storage):
            failure = check_store(heap_config.object_storage_config, heap_config.request_timeout_seconds)
            if failure is not None:
                problems.append(failure)
            else:
                found.append(
                    f"The rejected-records store {heap_config.object_storage_config.where} works: a test object "
                    "was written there, read back and deleted."
                )
                if isinstance(heap_config.change_detection, ObjectStorageSnapshot):
                    found.append(f"The change-detection snapshot is kept there, under {FOLDER}/.")
        if isinstance(heap_config.change_detection, LocalSnapshot):
            try:
                writable_folder(Path(heap_config.change_detection.path))
                found.append(f"The change-detection folder {heap_config.change_detection.path} can be written.")
            except AirbyteTracedException as error:
                problems.append(error.message)
        refusal = heap_config.deletion_refusal() if heap_config.deletion_api_key is not None else None
        if refusal is not None:
            problems.append(refusal)
        elif heap_config.deletion_api_key is not None:
            try:
                DeletionClient(heap_config, threading.Event()).take_token()
                found.append("Heap gave a token for deletion_api_key: user deletions can be sent.")
            except AirbyteTracedException as error:
                problems.append(error.message)
        if problems:
            return AirbyteConnectionStatus(status=Status.FAILED, message="; ".join(problems))
        return AirbyteConnectionStatus(status=Status.SUCCEEDED, message=" ".join([*found, CHECKED]))

    @staticmethod
    def _check_app_id(config: HeapConfig, endpoint: str, items_field: str) -> tuple[str | None, str]:
        """Posts an empty bulk request (which creates nothing) for the app id and for one no environment has,
        and compares the answers: what is wrong (or None), and what was found.

        Heap documents no answer to an empty request and no words for an unknown app id, so neither an
        answer's words nor its status alone tells: an answer that differs from the one for an app id that
        cannot exist does.
        """
        url = config.url + endpoint
        client = HeapClient(url, config.request_timeout_seconds)
        answer = client.post(RequestBody(config.app_id, items_field)(Batch(0)))
        if answer.verdict is Verdict.REDIRECTED:
            return redirected(url, answer).message, ""
        if answer.verdict in CONFIG_FAULTS:
            return unreachable(url, answer).message, ""
        if answer.status is None:
            return f"cannot reach {url}: {answer.detail}", ""
        if answer.verdict not in (Verdict.ACCEPTED, Verdict.REJECTED, Verdict.BAD_APP_ID):
            return f"Heap answered {answer.describe()} to {url}: try again later", ""
        unknown = client.post(RequestBody(NO_SUCH_APP_ID, items_field)(Batch(0)))
        if unknown.status is None:
            return f"cannot reach {url}: {unknown.detail}", ""
        if _same_answer(answer, unknown, (config.app_id, NO_SUCH_APP_ID)):
            if answer.verdict is Verdict.ACCEPTED:
                return None, (
                    f"{url} works, but Heap accepts an empty request for any app id, so check cannot tell whether "
                    f"app_id '{config.app_id}' exists: if no data shows in Heap after a sync, check the environment "
                    "id under Account > Manage > Projects."
                )
            return (
                f"Heap answers app_id '{config.app_id}' as it answers an app id no environment has "
                f"({answer.describe()}): check the environment id under Account > Manage > Projects"
            ), ""
        if answer.verdict is not Verdict.ACCEPTED and unknown.verdict is Verdict.ACCEPTED:
            return f"Heap refused app_id '{config.app_id}' ({answer.describe()}) but not an unknown one at {url}", ""
        return None, f"Heap knows app_id '{config.app_id}' at {config.url} (it answers it unlike an unknown app id)."

    def write(
        self,
        config: Mapping[str, Any],
        configured_catalog: ConfiguredAirbyteCatalog,
        input_messages: Iterable[AirbyteMessage],
    ) -> Iterable[AirbyteMessage]:
        """Sends the records to Heap, passing each STATE on once the records before it are settled."""
        chunks = ([message] for message in input_messages)
        return self._sync(config, configured_catalog, ticking(chunks, ObjectReader(), TICK_SECONDS))

    def _run_write(
        self, config: Mapping[str, Any], configured_catalog_path: str, input_stream: io.TextIOWrapper
    ) -> Iterable[AirbyteMessage]:
        """The CDK's write, reading stdin without building a protocol object for every record."""
        with open(configured_catalog_path, "rb") as catalog_file:
            catalog = ConfiguredAirbyteCatalogSerializer.load(orjson.loads(catalog_file.read()))
        lines = polled_lines(input_stream.buffer, LineReader(), TICK_SECONDS)
        yield from self._sync(config, catalog, lines)

    @staticmethod
    def read_config(config_path: str) -> MutableMapping[str, Any]:
        """The config file's JSON object, or a config error saying what the file holds instead."""
        try:
            with open(config_path, "rb") as config_file:
                config = orjson.loads(config_file.read())
        except OSError as error:
            raise config_error(f"Cannot read the config file {config_path}: {error.strerror}") from None
        except orjson.JSONDecodeError:
            raise config_error("Invalid configuration: the config file is not valid JSON") from None
        HeapConfig.require_object(config)
        return config

    def _sync(
        self, config: Mapping[str, Any], catalog: ConfiguredAirbyteCatalog, messages: Iterable[Any]
    ) -> Iterator[AirbyteMessage | bytes]:
        heap_config = HeapConfig.parse({**config, "dry_run": True} if self.dry_run_requested else config)
        found = routes(heap_config, catalog)
        for route in found:
            check_columns(route.api, route.stream)
        sync_id = next((str(s.sync_id) for s in catalog.streams if s.sync_id is not None), None)
        store = store_for(heap_config.object_storage_config, sync_id, heap_config.request_timeout_seconds)
        where = snapshot_file(heap_config)
        if where is None:
            yield from Sync(heap_config, found, store).run(messages)
            return
        snapshot = where.open(writable=not heap_config.dry_run)
        ended = False
        try:
            yield from Sync(heap_config, found, store, snapshot).run(messages)
            ended = True
        finally:
            try:
                where.close(snapshot)
            except StoreError:
                if ended:  # else the sync's own error is the one to report
                    raise

    def run(self, args: list[str]) -> None:
        """Runs a command, writing each output message as one line; STATE messages go out as the lines they
        came in as, plus destinationStats."""
        init_uncaught_exception_handler(logger)
        atexit.register(PRINT_BUFFER.flush)
        parsed_args = self.parse_args(args)
        gc.freeze()
        gc.set_threshold(YOUNG_OBJECTS_BEFORE_COLLECTION)
        dump = AirbyteMessageSerializer.dump
        try:
            for message in self.run_cmd(parsed_args):
                if type(message) is bytes:
                    PRINT_BUFFER.write(message.decode() + "\n")
                    PRINT_BUFFER.flush()
                elif type(message) is ProtocolMessage:
                    PRINT_BUFFER.write(orjson.dumps(protocol_json(message)).decode() + "\n")
                else:
                    PRINT_BUFFER.write(orjson.dumps(dump(message)).decode() + "\n")
        except AirbyteTracedException as error:
            PRINT_BUFFER.write(_error_line(error) + "\n")
            sys.exit(1)
        finally:
            PRINT_BUFFER.flush()


def _same_answer(first: Answer, second: Answer, app_ids: tuple[str, ...]) -> bool:
    """Whether two answers are the same but for the app ids they may quote."""

    def words(answer: Answer) -> str:
        text = answer.text
        for app_id in app_ids:
            text = re.sub(TOKEN_EDGE.format(re.escape(app_id)), "<app_id>", text)
        return text

    return first.status == second.status and words(first) == words(second)


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
