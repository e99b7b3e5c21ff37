"""The connector's configuration: parsed and validated once, before any record is read."""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from .pacing import PROPERTIES_PER_IDENTITY, TRACK_PER_IDENTITY, IdentityLimit

MAX_PROPERTY_NAME = 1023
MAX_EVENT_NAME = 1024
REGION_URLS = {"US": "https://heapanalytics.com", "EU": "https://c.eu.heap-api.com"}
MAX_DELETIONS = 1_000_000
"""The most users one sync may delete: a sync holds every deletion until its input ends (to apply the guard)."""


def config_error(message: str) -> AirbyteTracedException:
    """An exception that tells the user what to fix in the configuration."""
    return AirbyteTracedException(internal_message=message, message=message, failure_type=FailureType.config_error)


def split_columns(value: str) -> tuple[str, ...]:
    """The entries of a comma-separated column list, trimmed."""
    return tuple(name.strip() for name in value.split(",") if name.strip())


RENAME = re.compile(r"\s+as(?:\s+|$)", re.IGNORECASE)


@dataclass(frozen=True)
class PropertyColumn:
    """A source column sent as a property: the column reference it is read from, the Heap name it gets."""

    source: str
    name: str


@dataclass(frozen=True)
class PropertySelection:
    """What `property_columns` selects: named columns (each under its own or a new name) and, with `*`,
    every other top-level column but the excluded ones."""

    named: tuple[PropertyColumn, ...]
    rest: bool
    excluded: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> PropertySelection:
        """Reads `a, b as Heap Name, *, -c`; a ValueError names the entry that cannot be read."""
        named: list[PropertyColumn] = []
        excluded: list[str] = []
        rest = False
        for entry in split_columns(text):
            if entry == "*":
                rest = True
            elif entry.startswith("-"):
                column = entry[1:].strip()
                if not column:
                    raise ValueError("'-' names no column to leave out")
                excluded.append(column)
            else:
                source, renamed, name = (part.strip() for part in _partition_rename(entry))
                if not source or (renamed and not name):
                    raise ValueError(f"'{entry[:40]}' needs a column and a Heap name: 'column as Heap Name'")
                if len(name) > MAX_PROPERTY_NAME:
                    raise ValueError(
                        f"'{name[:40]}...' is longer than Heap's {MAX_PROPERTY_NAME}-character property names"
                    )
                named.append(PropertyColumn(source, name))
        for column in excluded:
            if not rest and not any(column.startswith(f"{named.source}{sep}") for named in named for sep in "._"):
                raise ValueError(
                    f"'-{column[:40]}' leaves out nothing: property_columns has no '*' and no named column holding it"
                )
        names = [column.name for column in named]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two columns would both be sent as property '{name[:40]}'")
        for column in named:
            if column.source in excluded:
                raise ValueError(f"'{column.source[:40]}' is both named and left out")
        return cls(tuple(named), rest, tuple(excluded))


def _partition_rename(entry: str) -> tuple[str, str, str]:
    """`source as Name` as (source, 'as', Name); an entry without a rename as (entry, '', entry)."""
    found = RENAME.search(entry)
    if found is None:
        return entry, "", entry
    return entry[: found.start()], "as", entry[found.end() :]


COLUMN_FIELDS = (
    "event_column",
    "identity_column",
    "user_id_column",
    "timestamp_column",
    "account_id_column",
    "idempotency_key_column",
)


class _Api(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    property_columns: str = "*"

    refused_property_names: ClassVar[frozenset[str]] = frozenset()
    items_per_minute: ClassVar[int | None] = None
    """The app's documented ceiling of items a minute for this API (none but track's)."""
    identity_limit: ClassVar[IdentityLimit] = PROPERTIES_PER_IDENTITY
    last_write_wins: ClassVar[bool] = False
    """Whether updates to one key merge, the later values winning (the property APIs)."""
    workers: ClassVar[int] = 4
    """Requests in flight at once: bulk requests carry the throughput, so a few suffice."""
    sends_properties: ClassVar[bool] = True
    ordered: ClassVar[bool] = False
    """Whether requests sharing a key must reach Heap in source order (a later one waits for the earlier)."""
    joins_arrays: ClassVar[bool] = True
    """Whether a list is sent as one text (its elements joined by `||`, as track stores them): Heap documents
    arrays for track only."""
    snapshot_key: ClassVar[tuple[str, ...]] = ()
    """The item fields that name what change detection remembers Heap accepted."""
    compares_properties: ClassVar[bool] = False
    """Whether change detection compares an item's properties (a merge) or only whether Heap has the item."""

    @property
    def own_field_columns(self) -> frozenset[str]:
        """The columns that fill Heap's own fields besides the key (left out of `*`): none here."""
        return frozenset()

    @property
    def event_scope(self) -> tuple[str, ...]:
        """What tells this API's events apart from another event mapping's of the same stream (none: no events)."""
        return ()

    @field_validator("*", mode="after")
    @classmethod
    def _not_blank(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            hint = "name a source column" if "_column" in info.field_name else "give it a value or leave it out"
            raise ValueError(f"{info.field_name} is empty: {hint}")
        return value

    @field_validator("property_columns")
    @classmethod
    def _readable_selection(cls, value: str) -> str:
        if not cls.sends_properties and value != "*":
            api_type = cls.model_fields["api_type"].annotation.__args__[0]  # type: ignore[union-attr]
            raise ValueError(f"{api_type} sends no properties: leave property_columns out")
        for column in PropertySelection.parse(value).named:
            if column.name.lower() in cls.refused_property_names:
                raise ValueError(
                    f"'{column.name}' cannot be a property here: Heap refuses any casing of "
                    f"'{column.name.lower()}' as a property name; send the column under another name "
                    f"('{column.source} as ...') or remove it from property_columns"
                )
        return value

    @property
    def probe(self) -> tuple[str, str]:
        """The endpoint and items field of the empty bulk request `check` posts: the API's own."""
        return self.endpoint, self.items_field

    @property
    def key_column(self) -> str:
        """The column that fills the Heap field naming the user or account (`<key_field>_column`)."""
        return getattr(self, f"{self.key_field}_column")

    @property
    def properties(self) -> PropertySelection:
        """The property columns selected, parsed."""
        return PropertySelection.parse(self.property_columns)

    @property
    def columns(self) -> list[tuple[str, str]]:
        """Every source column this API reads, as (option, column reference)."""
        found = [(field, getattr(self, field)) for field in COLUMN_FIELDS if getattr(self, field, None)]
        selection = self.properties
        found += [("property_columns", column.source) for column in selection.named]
        return found + [("property_columns", column) for column in selection.excluded]


class _IdentityOrUserId(_Api):
    """An API whose items name a user by an identity or by Heap's SDK user id, never both."""

    identity_column: str | None = None
    user_id_column: str | None = None

    @model_validator(mode="after")
    def _one_key(self) -> _IdentityOrUserId:
        if (self.identity_column is None) == (self.user_id_column is None):
            raise ValueError(
                "set exactly one of identity_column and user_id_column: Heap takes an identity or an SDK user_id, "
                "never both"
            )
        return self

    @property
    def key_field(self) -> str:
        """The Heap field the key column fills."""
        return "identity" if self.identity_column else "user_id"


class TrackApi(_IdentityOrUserId):
    api_type: Literal["track"]
    event_column: str | None = None
    event_name: str | None = None
    timestamp_column: str | None = None
    idempotency_key_column: str | None = None

    endpoint: ClassVar[str] = "/api/track"
    items_field: ClassVar[str] = "events"
    items_per_minute: ClassVar[int | None] = 15_000
    identity_limit: ClassVar[IdentityLimit] = TRACK_PER_IDENTITY
    last_write_wins: ClassVar[bool] = False
    joins_arrays: ClassVar[bool] = False
    snapshot_key: ClassVar[tuple[str, ...]] = ("idempotency_key",)

    @field_validator("event_name")
    @classmethod
    def _event_name_fits(cls, value: str | None) -> str | None:
        if value is not None and len(value) > MAX_EVENT_NAME:
            raise ValueError(f"is longer than Heap's {MAX_EVENT_NAME}-character event names")
        return value

    @model_validator(mode="after")
    def _one_event_source(self) -> TrackApi:
        if (self.event_column is None) == (self.event_name is None):
            raise ValueError(
                "set exactly one of event_column (a column holding each event's name) and event_name "
                "(one fixed name for every event)"
            )
        return self

    @property
    def event_scope(self) -> tuple[str, ...]:
        """The fixed event name, or the column event names are read from."""
        return ("event", self.event_name) if self.event_name else ("event_column", self.event_column or "")

    @property
    def own_field_columns(self) -> frozenset[str]:
        """The columns that fill the event's name, time and idempotency key: already sent as the event's own
        fields, so left out of `*`."""
        columns = (self.event_column, self.timestamp_column, self.idempotency_key_column)
        return frozenset(column for column in columns if column)


class UserPropertiesApi(_Api):
    api_type: Literal["add_user_properties"]
    identity_column: str

    endpoint: ClassVar[str] = "/api/add_user_properties"
    items_field: ClassVar[str] = "users"
    items_per_minute: ClassVar[int | None] = None
    identity_limit: ClassVar[IdentityLimit] = PROPERTIES_PER_IDENTITY
    last_write_wins: ClassVar[bool] = True
    ordered: ClassVar[bool] = True

    key_field: ClassVar[str] = "identity"
    refused_property_names: ClassVar[frozenset[str]] = frozenset({"id", "user_id"})
    snapshot_key: ClassVar[tuple[str, ...]] = ("identity",)
    compares_properties: ClassVar[bool] = True


class AccountPropertiesApi(_Api):
    api_type: Literal["add_account_properties"]
    account_id_column: str

    endpoint: ClassVar[str] = "/api/add_account_properties"
    items_field: ClassVar[str] = "accounts"
    items_per_minute: ClassVar[int | None] = None
    identity_limit: ClassVar[IdentityLimit] = PROPERTIES_PER_IDENTITY
    last_write_wins: ClassVar[bool] = True
    ordered: ClassVar[bool] = True

    key_field: ClassVar[str] = "account_id"
    snapshot_key: ClassVar[tuple[str, ...]] = ("account_id",)
    compares_properties: ClassVar[bool] = True


class IdentifyApi(_Api):
    """Links a Heap SDK user id to an identity: one pair a request, since Heap documents no bulk form."""

    api_type: Literal["identify"]
    user_id_column: str
    identity_column: str
    timestamp_column: str | None = None

    endpoint: ClassVar[str] = "/api/v1/identify"
    items_field: ClassVar[str | None] = None
    items_per_minute: ClassVar[int | None] = None
    identity_limit: ClassVar[IdentityLimit] = PROPERTIES_PER_IDENTITY
    last_write_wins: ClassVar[bool] = False
    ordered: ClassVar[bool] = True
    """Heap keeps a user id's first link for good and an identity's first ten: calls sharing either go in order."""
    snapshot_key: ClassVar[tuple[str, ...]] = ("identity", "user_id")
    workers: ClassVar[int] = 64
    """Single calls: throughput comes from many in flight over kept-alive connections."""
    sends_properties: ClassVar[bool] = False

    key_field: ClassVar[str] = "identity"

    @property
    def probe(self) -> tuple[str, str]:
        """Identify has no bulk form, so `check` proves the app id with an empty track request instead."""
        return TrackApi.endpoint, TrackApi.items_field


class UserDeletionApi(_IdentityOrUserId):
    """Deletes users from every environment of the Heap account, by identity or by SDK user id: permanent."""

    api_type: Literal["user_deletion"]

    endpoint: ClassVar[str] = "/api/public/v0/user_deletion"
    items_field: ClassVar[str] = "users"
    sends_properties: ClassVar[bool] = False

    @property
    def probe(self) -> tuple[str, str]:
        """The deletion API takes a key, not an app id: `check` proves the app id with an empty track request
        (and the key by taking a token)."""
        return TrackApi.endpoint, TrackApi.items_field


ApiConfig = Annotated[
    TrackApi | UserPropertiesApi | AccountPropertiesApi | IdentifyApi | UserDeletionApi,
    Field(discriminator="api_type"),
]


class StreamMapping(BaseModel):
    """One stream (by name, and namespace when given) loaded into one API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: str
    namespace: str | None = None
    api: ApiConfig

    @field_validator("stream")
    @classmethod
    def _stream_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty: name a stream of the connection")
        return value

    def matches(self, name: str, namespace: str | None) -> bool:
        """Whether a catalog stream is this mapping's stream (any namespace when none is given)."""
        return self.stream == name and (self.namespace is None or self.namespace == namespace)

    @property
    def label(self) -> str:
        """The stream as people read it: `namespace.name`, or the name."""
        return f"{self.namespace}.{self.stream}" if self.namespace else self.stream


class NoStorage(BaseModel):
    """Rejected records are counted and logged by position, not kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    storage_type: Literal["None"]


class StorageFormat(BaseModel):
    """How rejected records are written: Airbyte's `{"format_type": "CSV"}` or `{"format_type": "JSONL"}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_type: Literal["CSV", "JSONL"] = "CSV"


class StorageCompression(BaseModel):
    """Whether each file of rejected records is gzipped: Airbyte's `{"compression_type": "GZIP"}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    compression_type: Literal["No Compression", "GZIP"] = "No Compression"


PATH_VARIABLES = ("SYNC_ID", "NAMESPACE", "STREAM_NAME", "YEAR", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND", "EPOCH")
FILE_NAME_VARIABLES = ("date", "timestamp", "part_number", "sync_id", "format_extension")


class S3Storage(BaseModel):
    """Rejected records are kept in the user's S3 (or S3-compatible) bucket, with their reasons."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    storage_type: Literal["S3"]
    s3_bucket_name: str
    s3_bucket_region: str = ""
    bucket_path: str = ""
    access_key_id: str | None = None
    secret_access_key: str | None = None
    s3_endpoint: str | None = None
    format: StorageFormat = StorageFormat()
    compression: StorageCompression = StorageCompression()
    path_format: str = "${SYNC_ID}/${NAMESPACE}/${STREAM_NAME}/"
    file_name_format: str = "{date}_{timestamp}_{part_number}{format_extension}"

    @field_validator("format", mode="before")
    @classmethod
    def _format_as_text(cls, value: Any) -> Any:
        """`"CSV"` or `"JSONL"`, the form before 0.7.0, is the same as its object."""
        return {"format_type": value} if isinstance(value, str) else value

    @field_validator("path_format")
    @classmethod
    def _path_variables(cls, value: str) -> str:
        _variables_known(value, r"\$\{([^}]*)\}", PATH_VARIABLES, "${%s}")
        return value.strip().strip("/")

    @field_validator("file_name_format")
    @classmethod
    def _file_name_variables(cls, value: str) -> str:
        if "/" in value or "${" in value:
            raise ValueError("is a file name: put folders and ${...} variables in path_format")
        _variables_known(value, r"\{([^}]*)\}", FILE_NAME_VARIABLES, "{%s}")
        if "{part_number}" not in value or "{timestamp}" not in value:
            raise ValueError(
                "must hold {part_number} and {timestamp}, so no file of rejected records is written over by another "
                "(part numbers start again in a sync's next attempt)"
            )
        return value

    @field_validator("s3_bucket_name")
    @classmethod
    def _bucket_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty: name the bucket rejected records are written to")
        return value.strip()

    @field_validator("bucket_path")
    @classmethod
    def _path_trimmed(cls, value: str) -> str:
        return value.strip().strip("/")

    @field_validator("s3_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            parts = parse_url(value.strip())
        except LocationParseError:  # its message quotes the URL, which may hold a password
            raise ValueError("is not a valid URL (check its host name and port)") from None
        if parts.scheme not in ("http", "https") or not parts.host or parts.auth is not None:
            raise ValueError("must be http(s)://host[:port] of an S3-compatible store, without a user name or password")
        return value.strip().rstrip("/")

    @property
    def where(self) -> str:
        """The store as people read it: `s3://bucket/path`."""
        return f"s3://{self.s3_bucket_name}/{self.bucket_path}".rstrip("/")


StorageConfig = Annotated[NoStorage | S3Storage, Field(discriminator="storage_type")]


class NoChangeDetection(BaseModel):
    """Every record is sent, every sync."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: Literal["none"]


class LocalSnapshot(BaseModel):
    """What Heap accepted is kept in a directory, so a re-sync sends only what changed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: Literal["local"]
    path: str

    @field_validator("path")
    @classmethod
    def _path_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty: name a directory on a volume that outlives the container")
        return value.strip()


class ObjectStorageSnapshot(BaseModel):
    """What Heap accepted is kept in the object_storage_config bucket, so a re-sync sends only what changed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: Literal["object_storage"]


ChangeDetection = Annotated[NoChangeDetection | LocalSnapshot | ObjectStorageSnapshot, Field(discriminator="store")]


class HeapConfig(BaseModel):
    """Everything the user configures, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_id: str
    api: ApiConfig | None = None
    mappings: tuple[StreamMapping, ...] = ()
    region: Literal["US", "EU"] = "US"
    base_url: str | None = None
    max_events_per_minute: int | None = Field(None, ge=1)
    on_rejected_record: Literal["skip", "fail"] = "skip"
    max_retry_seconds: int = Field(600, ge=1)
    max_request_bytes: int = Field(1_000_000, ge=10_000)
    request_timeout_seconds: int = Field(60, ge=1)
    progress_interval_seconds: int = Field(30, ge=1)
    dry_run: bool = False
    dry_run_payloads: int = Field(10, ge=0)
    object_storage_config: StorageConfig | None = None
    change_detection: ChangeDetection = NoChangeDetection(store="none")
    deletion_api_key: SecretStr | None = None
    max_deletions_per_sync: int = Field(100_000, ge=1, le=MAX_DELETIONS)

    @field_validator("app_id", mode="before")
    @classmethod
    def _app_id_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and not value.strip():
            raise ValueError("app_id is empty: copy the environment id from Account > Manage > Projects")
        return value.strip() if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _api_or_mappings(cls, raw: Any) -> Any:
        """The rule between `api` and `mappings` comes first: a half-filled api form next to mappings is
        reported as the combination it is, not as the form's missing field."""
        if isinstance(raw, Mapping):
            api, mappings = raw.get("api"), raw.get("mappings")
            if api in UNSET_API:
                raw = {key: value for key, value in raw.items() if key != "api"}
                api = None
            if api is not None and mappings not in (None, []):
                raise ValueError(
                    "set either api (loads the catalog's single stream) or mappings (streams by name), not both: "
                    "remove api from the config (in the Airbyte UI, choose 'None: use Mappings' as the API Type) "
                    "to use mappings"
                )
        return raw

    @model_validator(mode="after")
    def _snapshot_has_a_bucket(self) -> HeapConfig:
        if isinstance(self.change_detection, ObjectStorageSnapshot) and not isinstance(
            self.object_storage_config, S3Storage
        ):
            raise ValueError(
                "change_detection: store 'object_storage' keeps the snapshot in the object_storage_config bucket, "
                "and none is configured: set object_storage_config to S3, or use store 'local' with a path"
            )
        return self

    @field_validator("deletion_api_key", mode="before")
    @classmethod
    def _key_or_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _deletions_allowed(self) -> HeapConfig:
        if any(api.api_type == "user_deletion" for api in self.apis):
            refusal = self.deletion_refusal("a mapping deletes users (api_type user_deletion)")
            if refusal is not None:
                raise ValueError(refusal)
        return self

    def deletion_refusal(self, what: str = "deletion_api_key is set") -> str | None:
        """Why this config cannot delete users, or None when it can; `what` says what asks it to."""
        if self.deletion_api_key is None:
            return (
                f"{what}, and deletion_api_key is not set: copy the key from Heap's Account > Manage > Privacy & "
                "Security into deletion_api_key, or remove the deletion mapping"
            )
        if self.region == "EU" or self.url == REGION_URLS["EU"]:
            return (
                f"{what}, and the region is EU: Heap documents its user deletion API for the US host only, so "
                "nothing is sent to the EU host; ask Heap how to delete the users of an EU account"
            )
        return None

    @field_validator("base_url")
    @classmethod
    def _safe_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return origin(value)

    @property
    def url(self) -> str:
        """The base URL requests go to."""
        return self.base_url or REGION_URLS[self.region]

    @property
    def apis(self) -> list[ApiConfig]:
        """Every API configured: the top-level one, or each mapping's."""
        return [self.api] if self.api is not None else [mapping.api for mapping in self.mappings]

    def endpoint_url(self, api: ApiConfig) -> str:
        """The full URL of an API."""
        return self.url + api.endpoint

    @staticmethod
    def require_object(raw: Any) -> None:
        """A config error unless the config is a JSON object."""
        if not isinstance(raw, Mapping):
            raise config_error(f"Invalid configuration: the config must be a JSON object, not {_json_kind(raw)}")

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> HeapConfig:
        """The validated config, or a config error that names every problem."""
        cls.require_object(raw)
        try:
            return cls.model_validate(dict(raw))
        except ValidationError as error:
            problems = "; ".join(dict.fromkeys(_describe(e) for e in error.errors()))
            raise config_error(f"Invalid configuration: {problems}") from None


def origin(url: str) -> str:
    """The scheme, host and port of a base URL, as the client will send them; a ValueError names what is refused.

    The URL is read with the parser requests sends with (urllib3's), and rebuilt from its parts, so
    the URL checked here is the URL requests will use. The URL itself is never quoted back: it may
    hold a password.
    """
    try:
        parts = parse_url(url.strip())
    except LocationParseError:
        raise ValueError("is not a valid URL (check its host name and port)") from None
    if parts.auth is not None:
        raise ValueError("must not hold a user name or password")
    if parts.query is not None or parts.fragment is not None:
        raise ValueError("must not hold a query (?...) or a fragment (#...)")
    if parts.path not in (None, "", "/"):
        raise ValueError("must be only scheme, host and port: Heap's API paths are added to it")
    if parts.scheme is None:
        raise ValueError(f"has no scheme: write it as https://{url.strip()[:60]}")
    if not parts.host:
        raise ValueError("has no host")
    if parts.port is not None and not 1 <= parts.port <= 65535:
        raise ValueError("must have a port from 1 to 65535")
    if parts.scheme != "https" and not (parts.scheme == "http" and _is_loopback(parts.host)):
        raise ValueError("must be https (http is allowed only to a loopback host such as 127.0.0.1)")
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{parts.host}{port}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _json_kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else kinds.get(type(value), "a value of another kind")


UNSET_API = ({}, {"api_type": "none"})
"""What an api form left unset says: nothing, or the form's own 'None: use Mappings' choice."""

STORAGE_MODELS: dict[str, type[BaseModel]] = {"None": NoStorage, "S3": S3Storage}
SNAPSHOT_MODELS: dict[str, type[BaseModel]] = {
    "none": NoChangeDetection,
    "local": LocalSnapshot,
    "object_storage": ObjectStorageSnapshot,
}

API_MODELS: dict[str, type[_Api]] = {
    "track": TrackApi,
    "add_user_properties": UserPropertiesApi,
    "add_account_properties": AccountPropertiesApi,
    "identify": IdentifyApi,
    "user_deletion": UserDeletionApi,
}


def _describe(error: Mapping[str, Any]) -> str:
    loc = [part for part in error["loc"] if not str(part).startswith("function-")]
    if error["type"] == "extra_forbidden":
        return _unknown_option(loc)
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        where = ".".join(map(str, loc))
        if where.startswith("object_storage"):
            tag, kinds = "storage_type", STORAGE_MODELS
        elif where.startswith("change_detection"):
            tag, kinds = "store", SNAPSHOT_MODELS
        else:
            tag, kinds = "api_type", API_MODELS
        found = error.get("input", {}).get(tag) if isinstance(error.get("input"), Mapping) else None
        said = f"{tag} '{str(found)[:40]}' is unknown" if found is not None else f"{tag} is missing"
        return f"{where}: {said}; use one of {', '.join(kinds)}"
    where = ".".join(map(str, loc))
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _variables_known(text: str, pattern: str, known: tuple[str, ...], form: str) -> None:
    """Fails naming the first variable in `text` that is not one of `known`."""
    for name in re.findall(pattern, text):
        if name not in known:
            raise ValueError(f"{form % name[:40]} is unknown; use {', '.join(form % each for each in known)}")


def _unknown_option(loc: list[Any]) -> str:
    """An unknown key, with the known key of the same object it is closest to."""
    model: type[BaseModel] = HeapConfig
    for part in loc[:-1]:
        if part in API_MODELS:
            model = API_MODELS[part]
        elif part in STORAGE_MODELS:
            model = STORAGE_MODELS[part]
        elif part in SNAPSHOT_MODELS:
            model = SNAPSHOT_MODELS[part]
        elif part == "mappings":
            model = StreamMapping
        elif isinstance(kind := model.model_fields.get(str(part), Field()).annotation, type) and issubclass(
            kind, BaseModel
        ):
            model = kind
    known = sorted(model.model_fields)
    name = str(loc[-1])
    where = ".".join(map(str, loc[:-1]))
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"the options here are: {', '.join(known)}"
    return f"{where + ': ' if where else ''}unknown option '{name[:60]}'; {hint}"
