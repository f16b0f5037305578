"""S3 (and anything that speaks it: LocalStack, moto, MinIO) through boto3.

The endpoint comes from ``AWS_ENDPOINT_URL`` (boto3 reads it itself). Each
object's sha256 is stored as user metadata ``x-amz-meta-sha256`` and checked on
read. Conditional writes use S3's native ``If-None-Match: *`` and
``If-Match: <etag>``.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ..errors import IntegrityError, NotFound, PreconditionFailed, StoreUnavailable
from .base import ObjectInfo, ObjectStore, UploadPart, UploadTarget, copy_hashing, sha256_file

# Lifecycle rules select staged uploads by this tag (see template.yaml), because
# S3 prefix filters cannot wildcard the tenant segment of the key.
STAGING_TAG = "modelbay-staging=true"
MAX_SINGLE_PUT = 5 * 1024**3


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


class S3Store(ObjectStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        client: Any = None,
        multipart_threshold: int = 256 * 1024**2,
        part_size: int = 64 * 1024**2,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self.client: Any = client or boto3.client(
            "s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}, signature_version="s3v4")
        )
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size

    def _k(self, key: str) -> str:
        return self.prefix + key

    def _call(self, fn: Callable[..., Any], key: str, **kw: Any) -> dict[str, Any]:
        """``fn(Bucket=..., **kw)``; S3's error codes become modelbay's errors."""
        try:
            return cast(dict[str, Any], fn(Bucket=self.bucket, **kw))
        except ClientError as e:
            code = _code(e)
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                raise PreconditionFailed(f"{key} was changed by another writer") from None
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"no object {key}") from None
            if code == "NoSuchBucket":
                raise StoreUnavailable(f"bucket {self.bucket} does not exist") from None
            raise

    def put_bytes(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        kw: dict[str, str] = {}
        if if_none_match:
            kw["IfNoneMatch"] = "*"
        if if_match is not None:
            kw["IfMatch"] = if_match
        try:
            r = self._call(
                self.client.put_object,
                key,
                Key=self._k(key),
                Body=data,
                Metadata={"sha256": hashlib.sha256(data).hexdigest()},
                **kw,
            )
        except NotFound:
            # S3 answers If-Match on a missing key with 404; to callers it is a lost race
            raise PreconditionFailed(f"{key} no longer exists") from None
        return str(r["ETag"])

    def put_file(self, key: str, path: Path, *, if_none_match: bool = False) -> str:
        sha = sha256_file(path)
        size = Path(path).stat().st_size
        if if_none_match or size <= self.multipart_threshold:
            kw = {"IfNoneMatch": "*"} if if_none_match else {}
            with open(path, "rb") as body:
                r = self._call(self.client.put_object, key, Key=self._k(key), Body=body, Metadata={"sha256": sha}, **kw)
            return str(r["ETag"])
        self.client.upload_file(str(path), self.bucket, self._k(key), ExtraArgs={"Metadata": {"sha256": sha}})
        return self._etag(key)

    def _etag(self, key: str) -> str:
        info = self.head(key)
        if info is None:  # deleted between our write and this read: another writer's business
            raise NotFound(f"no object {key}")
        return info.etag

    def get_bytes(self, key: str) -> tuple[bytes, str]:
        r = self._call(self.client.get_object, key, Key=self._k(key))
        data: bytes = r["Body"].read()
        want = r.get("Metadata", {}).get("sha256")
        if want is None or hashlib.sha256(data).hexdigest() != want:
            raise IntegrityError(f"{key}: stored sha256 does not match its bytes")
        return data, str(r["ETag"])

    def get_file(self, key: str, dest: Path, *, expected_sha256: str | None = None) -> ObjectInfo:
        r = self._call(self.client.get_object, key, Key=self._k(key))
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as out:
            sha, size = copy_hashing(r["Body"], out)
        stored = r.get("Metadata", {}).get("sha256")
        for want in (stored, expected_sha256):
            if want and want != sha:
                dest.unlink(missing_ok=True)
                raise IntegrityError(f"{key}: sha256 {sha} does not match the recorded {want}")
        return ObjectInfo(key, size, r["ETag"], sha, r["LastModified"].timestamp())

    def head(self, key: str) -> ObjectInfo | None:
        try:
            r = self._call(self.client.head_object, key, Key=self._k(key))
        except NotFound:
            return None
        return ObjectInfo(
            key, r["ContentLength"], r["ETag"], r.get("Metadata", {}).get("sha256"), r["LastModified"].timestamp()
        )

    def delete(self, key: str) -> None:
        self._call(self.client.delete_object, key, Key=self._k(key))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._k(prefix))
        n = len(self.prefix)
        for page in pages:
            for o in page.get("Contents", []):
                # listings carry no user metadata; sha256 needs a head() when wanted
                yield ObjectInfo(o["Key"][n:], o["Size"], o["ETag"], None, o["LastModified"].timestamp())

    def copy(self, src: str, dst: str, *, sha256: str) -> str:
        self.client.copy(
            {"Bucket": self.bucket, "Key": self._k(src)},
            self.bucket,
            self._k(dst),
            # drop the staging tag: the bucket's lifecycle rule expires tagged objects
            ExtraArgs={
                "Metadata": {"sha256": sha256},
                "MetadataDirective": "REPLACE",
                "TaggingDirective": "REPLACE",
                "Tagging": "",
            },
        )
        return self._etag(dst)

    def presign_put(self, key: str, *, size: int, expires: int) -> UploadTarget:
        if size <= min(self.multipart_threshold, MAX_SINGLE_PUT):
            url = self.client.generate_presigned_url(
                "put_object",
                Params={"Bucket": self.bucket, "Key": self._k(key), "Tagging": STAGING_TAG},
                ExpiresIn=expires,
            )
            return UploadTarget(key=key, url=url, headers={"x-amz-tagging": STAGING_TAG})
        mp = self.client.create_multipart_upload(Bucket=self.bucket, Key=self._k(key), Tagging=STAGING_TAG)
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
        self._call(
            self.client.complete_multipart_upload,
            key,
            Key=self._k(key),
            UploadId=multipart_id,
            MultipartUpload={"Parts": [{"ETag": e, "PartNumber": i} for i, e in enumerate(etags, 1)]},
        )
