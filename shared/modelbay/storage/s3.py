"""S3 (and anything that speaks it: LocalStack, moto, MinIO) through boto3.

The endpoint comes from ``AWS_ENDPOINT_URL`` (boto3 reads it itself). Each
object's sha256 is stored as user metadata ``x-amz-meta-sha256`` and checked on
read. Conditional writes use S3's native ``If-None-Match: *`` and
``If-Match: <etag>``.

Retries are this module's, not botocore's: one loop per call, bounded by a
number of attempts and by seconds (``Settings.s3_retry_*``), with exponential
backoff and full jitter. It knows which attempt of a conditional write may have
committed, so the 412 a retry meets on its own earlier write is recognised as
success (the stored sha256 is ours), and it has no shared quota that a burst of
failures could empty for every later call. What S3 answers after the budget is
spent becomes ``StoreUnavailable``: a 503 in words, never botocore's text.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from ..errors import IntegrityError, ModelbayError, NotFound, PreconditionFailed, StoreUnavailable
from ..settings import Settings
from .base import ObjectInfo, ObjectStore, UploadPart, UploadTarget, copy_hashing, sha256_file

log = logging.getLogger("modelbay.storage")
_T = TypeVar("_T")
# Lifecycle rules select staged uploads by this tag (see template.yaml), because
# S3 prefix filters cannot wildcard the tenant segment of the key.
STAGING_TAG = "modelbay-staging=true"
MAX_SINGLE_PUT = 5 * 1024**3
_PRECONDITION = {"PreconditionFailed", "ConditionalRequestConflict", "412"}
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
_TRANSIENT = {
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "TooManyRequests",
    "BandwidthLimitExceeded",
    "RequestTimeTooSkewed",
    "PriorRequestNotComplete",
}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "403"}
_TRANSIENT_ERRORS = (BotoConnectionError, HTTPClientError, IncompleteReadError)
BACKOFF_BASE = 0.1
BACKOFF_CAP = 4.0


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _status(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _transient(e: Exception) -> bool:
    if isinstance(e, ClientError):
        return _code(e) in _TRANSIENT or _status(e) >= 500 or _status(e) == 429
    return isinstance(e, _TRANSIENT_ERRORS)


def _what_failed(e: Exception) -> str:
    """A few words on one failed attempt, for the 503's message: never botocore's whole text."""
    if isinstance(e, ClientError):
        return f"S3 answered {_status(e) or ''} {_code(e)}".replace("  ", " ")
    names = {
        "ReadTimeoutError": "no answer within the read timeout",
        "ConnectTimeoutError": "no connection within the connect timeout",
        "EndpointConnectionError": "could not connect",
        "ConnectionClosedError": "the connection was closed",
        "ResponseStreamingError": "the answer was cut off",
        "IncompleteReadError": "the answer was cut off",
    }
    return names.get(type(e).__name__, "the connection failed")


@dataclass
class _Attempts:
    """One call's tries: whether an earlier one may have committed a write."""

    failed: int = 0


def s3_client(settings: Settings | None = None, **kw: Any) -> Any:
    """A boto3 S3 client with modelbay's timeouts; retries are S3Store's (botocore makes one attempt)."""
    s = settings or Settings()
    config = Config(
        connect_timeout=s.s3_connect_timeout,
        read_timeout=s.s3_read_timeout,
        retries={"total_max_attempts": 1, "mode": "standard"},
        signature_version="s3v4",
        max_pool_connections=32,
    )
    return boto3.client("s3", config=config, **kw)


class S3Store(ObjectStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        client: Any = None,
        multipart_threshold: int = 256 * 1024**2,
        part_size: int = 64 * 1024**2,
        settings: Settings | None = None,
    ) -> None:
        s = settings or Settings()
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self.client: Any = client or s3_client(s)
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.retry_attempts = s.s3_retry_attempts
        self.retry_seconds = s.s3_retry_seconds
        self.scratch_root = s.cache_dir / "scratch"

    def _k(self, key: str) -> str:
        return self.prefix + key

    # ------------------------------------------------------------ calls and retries
    def _retry(self, what: str, key: str, attempt: Callable[[], _T], tries: _Attempts | None = None) -> _T:
        """``attempt()`` until it succeeds, fails for good, or the budget is spent (then a 503)."""
        tries = tries or _Attempts()
        start = time.monotonic()
        deadline = start + self.retry_seconds
        for n in range(1, self.retry_attempts + 1):
            try:
                return attempt()
            except ClientError as e:
                tries.failed += int(e.response.get("ResponseMetadata", {}).get("RetryAttempts") or 0)
                if not _transient(e):
                    raise self._refused(e, what, key) from None
                last = _what_failed(e)
            except _TRANSIENT_ERRORS as e:
                last = _what_failed(e)
            except NoCredentialsError:
                raise StoreUnavailable(
                    "the server has no AWS credentials for the model store: give it a role or keys", retryable=False
                ) from None
            tries.failed += 1
            pause = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**n))
            if n == self.retry_attempts or time.monotonic() + pause > deadline:
                break
            log.info("S3 %s of %s failed (%s); retry %d in %.2f s", what, key, last, n, pause)
            time.sleep(pause)
        took = time.monotonic() - start
        raise StoreUnavailable(
            f"the model store is not answering ({what}: {last}; {n} attempts in {took:.0f} s); try again shortly",
            retryable=True,
            retry_after=max(1, round(self.retry_seconds / 4)),
        )

    def _refused(self, e: ClientError, what: str, key: str) -> ModelbayError:
        code = _code(e)
        if code in _PRECONDITION:
            return PreconditionFailed(f"{key} was changed by another writer")
        if code in _MISSING:
            return NotFound(f"no object {key}")
        if code == "NoSuchBucket":
            return StoreUnavailable(f"the model store's bucket {self.bucket} does not exist", retryable=False)
        if code in _DENIED:
            return StoreUnavailable(
                f"S3 refused the server access to bucket {self.bucket} ({code}): check its role or keys",
                retryable=False,
            )
        log.warning("S3 %s of %s refused: %s", what, key, e)
        return StoreUnavailable(f"the model store refused {what} ({code or _status(e)})", retryable=False)

    def _call(self, fn: Callable[..., Any], **kw: Any) -> dict[str, Any]:
        return cast(dict[str, Any], fn(Bucket=self.bucket, **kw))

    def _recognise(self, key: str, sha: str, tries: _Attempts) -> str | None:
        """After a 412: the etag of our own earlier attempt's write, if that is what is stored."""
        if not tries.failed:
            return None  # the only attempt met another writer's object
        info = self.head(key)
        if info is not None and info.sha256 == sha:
            log.info("S3 write of %s: a retry met its own committed write", key)
            return info.etag
        return None

    # ------------------------------------------------------------ writes
    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        tags: str | None = None,
    ) -> str:
        kw: dict[str, str] = {}
        if tags:
            kw["Tagging"] = tags
        if if_none_match:
            kw["IfNoneMatch"] = "*"
        if if_match is not None:
            kw["IfMatch"] = if_match
        sha = hashlib.sha256(data).hexdigest()
        tries = _Attempts()

        def once() -> str:
            r = self._call(self.client.put_object, Key=self._k(key), Body=data, Metadata={"sha256": sha}, **kw)
            return str(r["ETag"])

        try:
            return self._retry("writing", key, once, tries)
        except (PreconditionFailed, NotFound) as e:
            if (etag := self._recognise(key, sha, tries)) is not None:
                return etag
            if isinstance(e, NotFound):  # S3 answers If-Match on a missing key with 404: a lost race
                raise PreconditionFailed(f"{key} no longer exists") from None
            raise

    def put_file(self, key: str, path: Path, *, if_none_match: bool = False) -> str:
        sha = sha256_file(path)
        size = Path(path).stat().st_size
        tries = _Attempts()
        if if_none_match or size <= self.multipart_threshold:
            kw = {"IfNoneMatch": "*"} if if_none_match else {}

            def once() -> str:
                with open(path, "rb") as body:
                    r = self._call(self.client.put_object, Key=self._k(key), Body=body, Metadata={"sha256": sha}, **kw)
                return str(r["ETag"])

            try:
                return self._retry("writing", key, once, tries)
            except PreconditionFailed:
                if (etag := self._recognise(key, sha, tries)) is not None:
                    return etag
                raise
        from boto3.s3.transfer import TransferConfig

        transfer = TransferConfig(multipart_threshold=self.multipart_threshold, multipart_chunksize=self.part_size)
        self._retry(
            "writing",
            key,
            lambda: self.client.upload_file(
                str(path), self.bucket, self._k(key), ExtraArgs={"Metadata": {"sha256": sha}}, Config=transfer
            ),
        )
        return self._etag(key)

    def _etag(self, key: str) -> str:
        info = self.head(key)
        if info is None:  # deleted between our write and this read: another writer's business
            raise NotFound(f"no object {key}")
        return info.etag

    def copy(self, src: str, dst: str, *, sha256: str, if_match: str | None = None) -> str:
        # One CopyObject (up to 5 GB; models stop at 2 GiB): S3 checks If-Match on the source and
        # copies in one step, so the bytes published are the revision that was checked.
        kw = {"CopySourceIfMatch": if_match} if if_match is not None else {}

        def once() -> str:
            r = self._call(
                self.client.copy_object,
                Key=self._k(dst),
                CopySource={"Bucket": self.bucket, "Key": self._k(src)},
                Metadata={"sha256": sha256},
                MetadataDirective="REPLACE",
                # drop the staging tag: the bucket's lifecycle rule expires tagged objects
                TaggingDirective="REPLACE",
                Tagging="",
                **kw,
            )
            return str(r["CopyObjectResult"]["ETag"])

        try:
            return self._retry("copying", src, once)
        except PreconditionFailed:
            raise PreconditionFailed(f"{src} changed since it was checked") from None

    def delete(self, key: str) -> None:
        self._retry("deleting", key, lambda: self._call(self.client.delete_object, Key=self._k(key)))

    # ------------------------------------------------------------ reads
    def get_bytes(self, key: str) -> tuple[bytes, str]:
        def once() -> tuple[bytes, str, str | None]:
            r = self._call(self.client.get_object, Key=self._k(key))
            data: bytes = r["Body"].read()
            return data, str(r["ETag"]), r.get("Metadata", {}).get("sha256")

        data, etag, want = self._retry("reading", key, once)
        if want is None or hashlib.sha256(data).hexdigest() != want:
            raise IntegrityError(f"{key}: stored sha256 does not match its bytes")
        return data, etag

    def get_file(self, key: str, dest: Path, *, expected_sha256: str | None = None) -> ObjectInfo:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)

        def once() -> tuple[dict[str, Any], str, int]:
            r = self._call(self.client.get_object, Key=self._k(key))
            with open(dest, "wb") as out:  # a retry starts the file over
                sha, size = copy_hashing(r["Body"], out)
            return r, sha, size

        r, sha, size = self._retry("reading", key, once)
        stored = r.get("Metadata", {}).get("sha256")
        for want in (stored, expected_sha256):
            if want and want != sha:
                dest.unlink(missing_ok=True)
                raise IntegrityError(f"{key}: sha256 {sha} does not match the recorded {want}")
        return ObjectInfo(key, size, r["ETag"], sha, r["LastModified"].timestamp())

    def head(self, key: str) -> ObjectInfo | None:
        try:
            r = self._retry("reading", key, lambda: self._call(self.client.head_object, Key=self._k(key)))
        except NotFound:
            return None
        return ObjectInfo(
            key, r["ContentLength"], r["ETag"], r.get("Metadata", {}).get("sha256"), r["LastModified"].timestamp()
        )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        def once() -> builtins.list[dict[str, Any]]:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._k(prefix))
            return [o for page in pages for o in page.get("Contents", [])]

        n = len(self.prefix)
        for o in self._retry("listing", prefix, once):
            # listings carry no user metadata; sha256 needs a head() when wanted
            yield ObjectInfo(o["Key"][n:], o["Size"], o["ETag"], None, o["LastModified"].timestamp())

    # ------------------------------------------------------------ direct uploads
    def presign_put(self, key: str, *, size: int, expires: int) -> UploadTarget:
        if size <= min(self.multipart_threshold, MAX_SINGLE_PUT):
            url = self.client.generate_presigned_url(
                "put_object",
                Params={"Bucket": self.bucket, "Key": self._k(key), "Tagging": STAGING_TAG},
                ExpiresIn=expires,
            )
            return UploadTarget(key=key, url=url, headers={"x-amz-tagging": STAGING_TAG})
        mp = self._retry(
            "starting an upload",
            key,
            lambda: self._call(self.client.create_multipart_upload, Key=self._k(key), Tagging=STAGING_TAG),
        )
        n_parts = -(-size // self.part_size)
        parts = [
            UploadPart(
                i,
                self.client.generate_presigned_url(
                    "upload_part",
                    Params={"Bucket": self.bucket, "Key": self._k(key), "UploadId": mp["UploadId"], "PartNumber": i},
                    ExpiresIn=expires,
                ),
            )
            for i in range(1, n_parts + 1)
        ]
        return UploadTarget(key=key, multipart_id=mp["UploadId"], part_size=self.part_size, parts=parts)

    def complete_multipart(self, key: str, multipart_id: str, etags: builtins.list[str]) -> None:
        tries = _Attempts()
        try:
            self._retry(
                "completing an upload",
                key,
                lambda: self._call(
                    self.client.complete_multipart_upload,
                    Key=self._k(key),
                    UploadId=multipart_id,
                    MultipartUpload={"Parts": [{"ETag": e, "PartNumber": i} for i, e in enumerate(etags, 1)]},
                ),
                tries,
            )
        except NotFound:
            # NoSuchUpload on a retry: the earlier attempt completed it
            if not (tries.failed and self.head(key) is not None):
                raise
