"""Evidence on S3-compatible object storage with versioning and Object Lock in compliance mode: every write is a new
object version locked until its retention ends, which nobody (the bucket's owner included) can delete or shorten.

An overwrite only adds a version and a plain delete only adds a delete marker, so what a record *is* is its first
version: a write-once store reads each name's oldest version (by version id), and names what happened to it after
(`tampering`). A chain's head moves on with every record: its store is `moving` and reads the newest version, each
earlier head kept locked beside it.

The bucket must have been created with Object Lock enabled (S3 turns versioning on with it); credentials come from
the usual AWS chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlparse

from ..errors import InputError
from .store import StoreError

DEFAULT_RETENTION = timedelta(days=5 * 365 + 1)  # CSRC's five years for stress-test records, and a day's margin
COMPLIANCE = "COMPLIANCE"


@dataclass(frozen=True)
class Location:
    """s3://BUCKET[/PREFIX] and the endpoint that serves it (None: AWS's own)."""

    bucket: str
    prefix: str
    endpoint: str | None = None

    @classmethod
    def parse(cls, url: str, endpoint: str | None = None) -> Location:
        parts = urlparse(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise InputError(f"not an S3 location: {url!r} (say s3://BUCKET or s3://BUCKET/PREFIX)")
        return cls(parts.netloc, parts.path.strip("/"), endpoint or None)


class ObjectLockStore:
    """Named blobs as locked object versions under `location` (the Store interface of store.py)."""

    def __init__(self, location: Location, retention: timedelta = DEFAULT_RETENTION, *, moving: bool = False,
                 client: Any = None):
        if retention <= timedelta(0):
            raise InputError(f"an evidence retention must be positive, not {retention}")
        self.location, self.retention, self.moving = location, retention, moving
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # an S3 client only for stacks that keep evidence there
            from botocore.config import Config

            self._client = boto3.client("s3", endpoint_url=self.location.endpoint,
                                        config=Config(retries={"max_attempts": 3, "mode": "standard"},
                                                      connect_timeout=5, read_timeout=30))
        return self._client

    def key(self, name: str) -> str:
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise StoreError(f"not a name inside the store: {name!r}")
        return f"{self.location.prefix}/{name}" if self.location.prefix else name

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.location.bucket, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise StoreError(f"{self.describe()} refused to {what}: {error.get('Code', '?')} "
                             f"{error.get('Message', '')}".rstrip()) from None
        except BotoCoreError as exc:
            raise StoreError(f"{self.describe()} could not {what}: {exc}") from None

    def require_object_lock(self) -> None:
        """StoreError unless the bucket answers and has Object Lock enabled (and so versioning)."""
        try:
            answer = self._call("say whether it holds Object Lock", self.client.get_object_lock_configuration)
        except StoreError as exc:  # S3's answer for a bucket made without it; anything else as it came
            if "ObjectLockConfigurationNotFoundError" not in str(exc):
                raise
            answer = {}
        if (answer.get("ObjectLockConfiguration") or {}).get("ObjectLockEnabled") != "Enabled":
            raise StoreError(f"{self.describe()} has no Object Lock: records kept there could be deleted (create the "
                             "bucket with --object-lock-enabled-for-bucket)")

    def versions(self, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(versions newest first, delete markers) of exactly `name`."""
        key = self.key(name)
        found: list[dict[str, Any]] = []
        markers: list[dict[str, Any]] = []
        pages = self._call(f"list the versions of {name}", self.client.get_paginator("list_object_versions").paginate,
                           Prefix=key)
        for page in pages:
            found += [v for v in page.get("Versions", []) if v["Key"] == key]
            markers += [m for m in page.get("DeleteMarkers", []) if m["Key"] == key]
        return found, markers

    def put(self, name: str, data: bytes, *, replace: bool = False) -> None:
        if not replace:
            held = self.get(name)
            if held == data:
                return
            if held is not None:
                raise StoreError(f"{self.describe()} already holds {name} with other content: records are written once")
        until = datetime.now(timezone.utc) + self.retention
        self._call(f"write {name}", self.client.put_object, Key=self.key(name), Body=data,
                   ObjectLockMode=COMPLIANCE, ObjectLockRetainUntilDate=until)

    def get(self, name: str) -> bytes | None:
        """The name's first version (a write-once store) or its newest (a moving one); None if it has none."""
        found, _ = self.versions(name)
        if not found:
            return None
        version = found[0] if self.moving else found[-1]
        answer = self._call(f"read {name}", self.client.get_object, Key=self.key(name), VersionId=version["VersionId"])
        return bytes(answer["Body"].read())

    def names(self, prefix: str) -> list[str]:
        """Every name under `prefix` that has a version, whether or not a delete marker hides it."""
        base = self.key(prefix) if prefix else self.location.prefix
        strip = f"{self.location.prefix}/" if self.location.prefix else ""
        keys: set[str] = set()
        pages = self._call(f"list {prefix or 'its names'}", self.client.get_paginator("list_object_versions").paginate,
                           Prefix=base)
        for page in pages:
            keys |= {v["Key"] for v in page.get("Versions", [])}
        return sorted(k.removeprefix(strip) for k in keys if not k.rsplit("/", 1)[-1].startswith("."))

    def tampering(self, prefix: str) -> list[str]:
        """What was done to write-once names under `prefix` after their first version: overwritten (a newer
        version, which is not read), or deleted (a delete marker hides the original, which is still read)."""
        if self.moving:
            return []
        said = []
        for name in self.names(prefix):
            found, markers = self.versions(name)
            if len(found) > 1:
                said.append(f"{name} was overwritten {len(found) - 1} time(s) in {self.describe()}: its first "
                            f"version {found[-1]['VersionId']} is the one read")
            if markers:
                said.append(f"{name} was deleted in {self.describe()} (a delete marker): its locked version "
                            f"{found[-1]['VersionId']} is still read")
        return said

    def describe(self) -> str:
        where = f"s3://{self.location.bucket}/{self.location.prefix}".rstrip("/")
        return where + (f" at {self.location.endpoint}" if self.location.endpoint else "")
