"""template.yaml's storage stack on LocalStack (Python core, no Docker), and modelbay serving on it.

Without Docker LocalStack cannot create Lambda functions, so the functions and the
API are checked on the translated template (tests/test_template.py); here the
bucket, its policy and lifecycle and the bootstrap secret go through LocalStack's
CloudFormation, and the real server pushes and lists a model on that bucket with
the bootstrap key read from Secrets Manager. LocalStack is the test run's one
instance (the ``localstack`` fixture, tests/servers.py), on a free port.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from tests.sam_tools import ROOT, SAM_VENV

pytestmark = pytest.mark.deploy


@pytest.fixture(scope="module")
def stack(localstack):
    """template.yaml's storage stack deployed through LocalStack's CloudFormation (the run's LocalStack)."""
    if not (SAM_VENV / "bin" / "python").exists():
        pytest.skip("no .venv-sam: run `make sam-install`")
    name = f"mb-{uuid.uuid4().hex[:8]}"
    r = subprocess.run(
        [str(SAM_VENV / "bin/python"), "infra/deploy_local.py", "--stack", name],
        cwd=ROOT,
        env={**os.environ, **localstack.env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def aws(monkeypatch, stack, localstack):
    for k, v in localstack.env.items():
        monkeypatch.setenv(k, v)
    return localstack.client


def test_storage_stack_and_modelbay_on_it(aws, stack, mlp_path, tmp_path):
    # one test, so that the stack is deployed once
    _storage_stack_matches_the_template(aws, stack)
    _modelbay_serves_on_the_localstack_bucket(aws, stack, mlp_path, tmp_path)


def _storage_stack_matches_the_template(aws, stack):
    s3 = aws("s3")
    bucket = stack["BucketName"]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    enc = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert enc["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(pab.values()) and len(pab) == 4
    # LocalStack's CloudFormation does not apply LifecycleConfiguration (test_template checks the rules)
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    secret = aws("secretsmanager").get_secret_value(SecretId=stack["BootstrapKeySecretArn"])["SecretString"]
    assert len(secret) == 48 and secret.isalnum()


def _modelbay_serves_on_the_localstack_bucket(aws, stack, mlp_path, tmp_path):
    from modelbay.api.app import create_app
    from modelbay.client import ApiError, Client
    from modelbay.settings import Settings
    from tests.servers import running

    boot = aws("secretsmanager").get_secret_value(SecretId=stack["BootstrapKeySecretArn"])["SecretString"]
    settings = Settings(
        store_url=f"s3://{stack['BucketName']}/",
        cache_dir=tmp_path / "cache",
        auth=True,
        bootstrap_key_secret=stack["BootstrapKeySecretArn"],
    )
    with running(create_app(settings)) as url:
        with Client(url, boot) as root:
            assert root.whoami().root is True
            root.create_tenant("acme")
            key = root.create_key(["manage", "invoke"], tenant="acme").key
        with Client(url, key) as acme:
            m = acme.push(mlp_path, "digits", aliases=["production"])  # presigned PUT to LocalStack S3
            assert m.version == 1 and acme.aliases("digits") == {"production": 1}
            with pytest.raises(ApiError) as e:  # conditional writes: LocalStack S3 honours If-Match
                acme.set_alias("digits", "production", 1, expected_version=7)
            assert e.value.status == 412
    s3 = aws("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stack["BucketName"])["Contents"]]
    assert "tenants/acme/models/digits/1/model.onnx" in keys
    assert any(k.startswith("system/keys/") for k in keys)
