"""template.yaml: lint, and the wiring of what SAM makes of it (LocalStack cannot run Lambdas here).

Handlers import, every route of both apps reaches the right function through the
gateway, IAM is least privilege, the bucket is private, versioned, TLS-only and
expires abandoned uploads.
"""

from __future__ import annotations

import fnmatch
import json
import re

import pytest

from tests.sam_tools import ROOT, run_sam, translated

pytestmark = pytest.mark.deploy
BUCKET_ARN = "arn:aws:s3:::modelbay-bucket"


@pytest.fixture(scope="module")
def cfn() -> dict:
    return translated()


def res(cfn, type_: str) -> dict[str, dict]:
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == type_}


def test_sam_validate_lint():
    r = run_sam("validate", "--lint", "--template-file", "template.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "is a valid SAM Template" in r.stdout + r.stderr


# ------------------------------------------------------------------ functions
def _code_dir(fn: dict) -> str:
    key = fn["Properties"]["Code"]["S3Key"]
    return key


def test_functions_python312_arch_param_layer_and_handlers_import(cfn, s3_bucket, monkeypatch):
    from tests.apigw import LambdaContext, load_function

    all_fns = res(cfn, "AWS::Lambda::Function")
    assert set(all_fns) == {"InferenceFunction", "ManagementFunction", "SweepFunction", "CanaryGuardFunction"} | set(
        IMAGE_VARIANTS.values()
    )
    fns = {k: v for k, v in all_fns.items() if k not in IMAGE_VARIANTS.values()}
    layers = res(cfn, "AWS::Lambda::LayerVersion")
    ((layer_id, layer),) = layers.items()
    assert layer["Properties"]["Content"] == {"S3Bucket": "local", "S3Key": "shared"}
    monkeypatch.setenv("MODELBAY_STORE", f"s3://{s3_bucket}/")
    for name, fn in fns.items():
        p = fn["Properties"]
        assert re.fullmatch(r"python3\.(1[2-9])", p["Runtime"]), p["Runtime"]
        assert p["Architectures"] == [{"Ref": "Architecture"}]
        assert p["Layers"] == [{"Ref": layer_id}]
        assert p["Handler"] == "app.handler"
        module = load_function(_code_dir(fn).removeprefix("functions/"))
        assert callable(module.handler), name
    params = cfn["Parameters"]
    assert params["Architecture"]["Default"] == "arm64"
    assert {
        "InferenceMemorySize",
        "InferenceTimeout",
        "ManagementMemorySize",
        "ManagementTimeout",
        "ProvisionedConcurrency",
        "EnableSnapStart",
        "PrewarmModels",
    } <= set(params)
    inf = fns["InferenceFunction"]["Properties"]
    assert inf["MemorySize"] == {"Ref": "InferenceMemorySize"} and inf["Timeout"] == {"Ref": "InferenceTimeout"}
    assert inf["Environment"]["Variables"]["MODELBAY_PREWARM"] == {"Ref": "PrewarmModels"}
    # an inference run ends with modelbay's 504 before Lambda ends the function (issue 11, F2)
    assert inf["Environment"]["Variables"]["MODELBAY_FUNCTION_TIMEOUT_SECONDS"] == {"Ref": "InferenceTimeout"}
    for alias_id in ("InferenceFunctionAliaslive", "InferenceImageFunctionAliaslive"):
        alias = res(cfn, "AWS::Lambda::Alias")[alias_id]["Properties"]
        assert alias["ProvisionedConcurrencyConfig"]["Fn::If"][0] == "UseProvisionedConcurrency"
    # the sweep function runs for real against the bucket
    swept = load_function("sweep").handler({"source": "aws.events"}, LambdaContext())
    from modelbay.registry import SWEEP_COUNTS

    assert set(swept) == {*SWEEP_COUNTS, "work_files"} and all(n == 0 for n in swept.values())


# The inference and management functions also come as an image (PackageType=Image): the same
# handler modules, the same role, settings and limits; exactly one of each pair exists.
IMAGE_VARIANTS = {"InferenceFunction": "InferenceImageFunction", "ManagementFunction": "ManagementImageFunction"}


def test_image_variants_run_the_zip_handlers_with_the_same_role_and_settings(cfn):
    assert cfn["Parameters"]["PackageType"]["Default"] == "Zip"
    assert cfn["Parameters"]["PackageType"]["AllowedValues"] == ["Zip", "Image"]
    assert cfn["Conditions"]["UseImage"] == {"Fn::Equals": [{"Ref": "PackageType"}, "Image"]}
    fns = res(cfn, "AWS::Lambda::Function")
    for zip_id, image_id in IMAGE_VARIANTS.items():
        z, i = fns[zip_id], fns[image_id]
        assert (z["Condition"], i["Condition"]) == ("UseZip", "UseImage")
        zp, ip = z["Properties"], i["Properties"]
        # the ImageUri parameter; SAM resolves it where AutoPublishAlias hashes the code (here: its default)
        assert ip["PackageType"] == "Image"
        assert ip["Code"]["ImageUri"] in ({"Ref": "ImageUri"}, cfn["Parameters"]["ImageUri"]["Default"])
        assert not {"Runtime", "Handler", "Layers"} & set(ip)
        # functions/<name>/app.py's `handler`, the module the zip runs as app.handler
        module = _code_dir(z).replace("/", ".") + "." + zp["Handler"]
        assert ip["ImageConfig"]["Command"] == [module], (ip["ImageConfig"], module)
        for key in ("Role", "MemorySize", "Timeout", "EphemeralStorage", "Environment", "Architectures"):
            assert ip[key] == zp[key], key
    assert "SweepFunction" not in IMAGE_VARIANTS  # housekeeping stays a zip in both modes
    # the routes' text is the same in both modes, so only AlwaysDeploy redeploys the stage on a switch
    assert re.search(r"^      AlwaysDeploy: true$", (ROOT / "template.yaml").read_text(), re.MULTILINE)
    rule = cfn["Rules"]["ImageNeedsImageUri"]  # no Image stack without an image
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "PackageType"}, "Image"]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ImageUri"}, ""]}]}
    # API Gateway may invoke whichever variant exists, from this API only
    perms = {
        p["Properties"]["FunctionName"]["Fn::If"][2].get("Ref", "").removesuffix("Aliaslive")
        or p["Properties"]["FunctionName"]["Fn::If"][2]["Fn::GetAtt"][0]: p["Properties"]
        for p in res(cfn, "AWS::Lambda::Permission").values()
        if "Fn::If" in p["Properties"]["FunctionName"]
    }
    assert set(perms) == set(IMAGE_VARIANTS)
    for p in perms.values():
        assert p["Principal"] == "apigateway.amazonaws.com" and p["Action"] == "lambda:InvokeFunction"
        assert "${ModelbayApi}/*" in p["SourceArn"]["Fn::Sub"]


# ------------------------------------------------------------------ API
def _gateway_paths(cfn) -> dict[str, dict[str, dict]]:
    (api,) = res(cfn, "AWS::ApiGateway::RestApi").values()
    return api["Properties"]["Body"]["paths"]


def _function_of(op: dict) -> str:
    """The zip function a route reaches; its other branch must be the same function's image variant."""
    template, variables = op["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
    assert template.endswith(":lambda:path/2015-03-31/functions/${Fn}/invocations"), template
    condition, image, zip_ = variables["Fn"]["Fn::If"]

    def name(ref: dict) -> str:  # Ref <Function>Aliaslive, or GetAtt <Function>.Arn
        return ref["Ref"].removesuffix("Aliaslive") if "Ref" in ref else ref["Fn::GetAtt"][0]

    assert condition == "UseImage" and IMAGE_VARIANTS[name(zip_)] == name(image), (image, zip_)
    return name(zip_)


def _gateway_route(paths: dict, path: str, method: str) -> dict | None:
    """The operation API Gateway picks for a concrete path: exact paths before {proxy+}."""

    def ops(p):
        o = paths[p]
        return o.get(method.lower()) or o.get("x-amazon-apigateway-any-method")

    if path in paths and ops(path):
        return ops(path)
    greedy = [p for p in paths if p.endswith("/{proxy+}") and path.startswith(p[: -len("{proxy+}")])]
    if greedy:
        return ops(max(greedy, key=len))
    return None


def test_routes_reach_their_function_and_need_a_key(cfn, tmp_path):
    from modelbay.api.app import create_inference_app, create_registry_app
    from modelbay.auth.http import PUBLIC
    from modelbay.settings import Settings

    paths = _gateway_paths(cfn)
    # the local upload URL serves only stores without presigned URLs; on AWS the bytes go to S3
    open_at_gateway = PUBLIC - {"/registry/uploads/{upload_id}/files/{file}"}
    want = {"InferenceFunction": create_inference_app, "ManagementFunction": create_registry_app}
    checked = 0
    for function, factory in want.items():
        app = factory(Settings(store_url=str(tmp_path / "s"), cache_dir=tmp_path / "c"))
        for path, methods in app.openapi()["paths"].items():
            concrete = re.sub(r"\{[^}]+\}", "x1", path)
            for method in methods:
                op = _gateway_route(paths, concrete, method)
                assert op is not None, f"{method.upper()} {path} has no API Gateway route"
                assert _function_of(op) == function, (path, _function_of(op))
                # health probes are open at the gateway as in the app; all else needs a usage-plan key
                assert (op.get("security") == [{"api_key": []}]) == (path not in open_at_gateway), (
                    path,
                    op.get("security"),
                )
                checked += 1
    assert checked >= 16
    assert _gateway_route(paths, "/elsewhere", "GET") is None


def test_api_is_rest_with_binary_types_usage_plan_and_json_errors(cfn):
    (api,) = res(cfn, "AWS::ApiGateway::RestApi").values()
    body = api["Properties"]["Body"]
    assert "application/octet-stream" in body["x-amazon-apigateway-binary-media-types"]  # OIP binary extension
    assert body["securityDefinitions"]["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    plan = res(cfn, "AWS::ApiGateway::UsagePlan")["UsagePlan"]["Properties"]
    assert plan["UsagePlanName"] == {"Fn::Sub": "${AWS::StackName}-keys"}
    assert plan["Throttle"] == {"RateLimit": {"Ref": "ThrottleRateLimit"}, "BurstLimit": {"Ref": "ThrottleBurstLimit"}}
    assert plan["Quota"] == {"Limit": {"Ref": "QuotaPerDay"}, "Period": "DAY"}
    mgmt_env = cfn["Resources"]["ManagementFunction"]["Properties"]["Environment"]["Variables"]
    assert mgmt_env["MODELBAY_USAGE_PLAN"] == plan["UsagePlanName"]  # the key mirror finds the plan by name
    key = res(cfn, "AWS::ApiGateway::ApiKey")["BootstrapGatewayKey"]["Properties"]
    assert "resolve:secretsmanager" in key["Value"]["Fn::Sub"]
    assert res(cfn, "AWS::ApiGateway::UsagePlanKey")
    gateway_responses = {
        r["Properties"]["ResponseType"]: r["Properties"] for r in res(cfn, "AWS::ApiGateway::GatewayResponse").values()
    }
    assert {"INVALID_API_KEY", "THROTTLED", "QUOTA_EXCEEDED", "DEFAULT_4XX", "DEFAULT_5XX"} <= set(gateway_responses)
    for r in gateway_responses.values():
        tpl = r["ResponseTemplates"]["application/json"]
        probe = json.loads(tpl.replace("$context.error.messageString", '"msg"'))
        assert probe["error"] and probe["code"]


def test_bootstrap_key_is_noecho_and_lives_in_a_secret(cfn):
    p = cfn["Parameters"]["BootstrapAdminKey"]
    assert p["NoEcho"] is True and p["Default"] == ""
    for fn in ("InferenceFunction", "ManagementFunction", *IMAGE_VARIANTS.values()):
        env = cfn["Resources"][fn]["Properties"]["Environment"]["Variables"]
        assert env["MODELBAY_BOOTSTRAP_KEY_SECRET"] == {"Ref": "BootstrapKeySecret"}
        assert "MODELBAY_BOOTSTRAP_KEY" not in env  # never the value in the environment
    outputs = cfn["Outputs"]
    assert {"ApiUrl", "BucketName", "BootstrapKeySecretArn"} <= set(outputs)


# ------------------------------------------------------------------ IAM
def _resolve(x):
    if isinstance(x, str):
        return x
    if "Fn::Sub" in x:
        return (
            x["Fn::Sub"]
            .replace("${ModelBucket.Arn}", BUCKET_ARN)
            .replace("${AWS::Partition}", "aws")
            .replace("${AWS::Region}", "us-east-1")
        )
    if x == {"Fn::GetAtt": ["ModelBucket", "Arn"]}:
        return BUCKET_ARN
    if x == {"Ref": "BootstrapKeySecret"}:
        return "arn:aws:secretsmanager:us-east-1:123456789012:secret:boot"
    raise AssertionError(f"unexpected resource {x}")


def _statements(cfn, role: str) -> list[dict]:
    out = []
    for pol in cfn["Resources"][role]["Properties"].get("Policies", []):
        for st in pol["PolicyDocument"]["Statement"]:
            st = dict(st)
            st["Action"] = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
            r = st["Resource"]
            st["Resource"] = [_resolve(x) for x in (r if isinstance(r, list) else [r])]
            out.append(st)
    return out


def allowed(cfn, role: str, action: str, resource: str, prefix: str | None = None) -> bool:
    for st in _statements(cfn, role):
        if st["Effect"] != "Allow":
            continue
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in st["Action"]):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in st["Resource"]):
            continue
        like = st.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
        if like is not None and (prefix is None or not any(fnmatch.fnmatchcase(prefix, p) for p in like)):
            continue
        return True
    return False


def obj(key: str) -> str:
    return f"{BUCKET_ARN}/{key}"


# read-only actions IAM knows no resource for: "*" is the only resource they take
NO_RESOURCE_LEVEL = {"cloudwatch:GetMetricData", "cloudwatch:ListMetrics"}


def test_no_wildcard_actions_or_resources(cfn):
    for role in res(cfn, "AWS::IAM::Role"):
        for st in _statements(cfn, role):
            assert all(a != "*" and not a.endswith(":*") for a in st["Action"]), (role, st)
            if not set(st["Action"]) <= NO_RESOURCE_LEVEL:
                assert all(r != "*" for r in st["Resource"]), (role, st)
        managed = [_resolve(a) for a in cfn["Resources"][role]["Properties"].get("ManagedPolicyArns", [])]
        assert managed == ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"], (role, managed)


def test_inference_only_reads_models(cfn):
    r = "InferenceFunctionRole"
    assert allowed(cfn, r, "s3:GetObject", obj("tenants/acme/models/digits/3/model.onnx"))
    assert allowed(cfn, r, "s3:GetObject", obj("tenants/acme/aliases/digits/production.json"))
    assert allowed(cfn, r, "s3:GetObject", obj("system/keys/0123456789ab.json"))  # to check API keys
    assert allowed(cfn, r, "s3:ListBucket", BUCKET_ARN, prefix="tenants/acme/models/digits/")
    for action in ("s3:PutObject", "s3:DeleteObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"):
        for key in ("tenants/acme/models/digits/3/model.onnx", "system/keys/x.json", "tenants/acme/uploads/u/f"):
            assert not allowed(cfn, r, action, obj(key)), (action, key)
    for key in ("tenants/acme/uploads/u/files/model.onnx", "system/audit/acme/x.json", "system/tenants/a.json"):
        assert not allowed(cfn, r, "s3:GetObject", obj(key)), key
    assert not allowed(cfn, r, "s3:ListBucket", BUCKET_ARN, prefix="system/")
    assert not allowed(cfn, r, "s3:ListBucket", BUCKET_ARN)  # no unconditioned listing
    assert not allowed(cfn, r, "apigateway:POST", "arn:aws:apigateway:us-east-1::/apikeys")
    # payload capture: it writes (and tags) under its tenant's capture prefix, and reads the capture settings
    key = "tenants/acme/capture/digits/2026/01/02/030405-abc.jsonl.gz"
    assert allowed(cfn, r, "s3:PutObject", obj(key)) and allowed(cfn, r, "s3:PutObjectTagging", obj(key))
    assert not allowed(cfn, r, "s3:GetObject", obj(key)) and not allowed(cfn, r, "s3:DeleteObject", obj(key))
    assert allowed(cfn, r, "s3:GetObject", obj("tenants/acme/capture-config/digits.json"))
    assert not allowed(cfn, r, "s3:PutObject", obj("tenants/acme/capture-config/digits.json"))


def test_captured_payloads_expire_by_their_tag(cfn):
    from modelbay.capture import CAPTURE_TAG

    rules = {r["Id"]: r for r in cfn["Resources"]["ModelBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
    key, value = CAPTURE_TAG.split("=")
    assert rules["expire-captured-payloads"]["TagFilters"] == [{"Key": key, "Value": value}]
    assert rules["expire-captured-payloads"]["ExpirationInDays"] == {"Ref": "CaptureRetentionDays"}


def test_management_writes_registry_and_keys_but_not_the_bucket(cfn):
    r = "ManagementFunctionRole"
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert allowed(cfn, r, action, obj("tenants/acme/models/digits/3/model.onnx"))
        assert allowed(cfn, r, action, obj("system/keys/0123456789ab.json"))
    assert allowed(cfn, r, "s3:PutObjectTagging", obj("tenants/acme/uploads/u/files/model.onnx"))
    for action in (
        "s3:DeleteBucket",
        "s3:PutBucketPolicy",
        "s3:PutLifecycleConfiguration",
        "s3:PutBucketVersioning",
        "s3:DeleteObjectVersion",
    ):
        assert not allowed(cfn, r, action, BUCKET_ARN) and not allowed(cfn, r, action, obj("tenants/x"))
    assert not allowed(cfn, r, "s3:PutObject", obj("elsewhere/x"))
    assert allowed(cfn, r, "apigateway:POST", "arn:aws:apigateway:us-east-1::/apikeys")
    assert not allowed(cfn, r, "apigateway:DELETE", "arn:aws:apigateway:us-east-1::/restapis/abc")
    assert not allowed(cfn, r, "apigateway:PATCH", "arn:aws:apigateway:us-east-1::/usageplans/abc")
    s = "SweepFunctionRole"
    assert allowed(cfn, s, "s3:DeleteObject", obj("tenants/acme/uploads/u/files/model.onnx"))
    assert not allowed(cfn, s, "s3:GetObject", obj("system/keys/x.json"))
    g = "CanaryGuardFunctionRole"  # writes alias documents and audit records; deletes only its own marks
    assert allowed(cfn, g, "s3:PutObject", obj("tenants/acme/aliases/digits/production.json"))
    assert allowed(cfn, g, "s3:PutObject", obj("system/audit/acme/2026-01-01/1.json"))
    assert allowed(cfn, g, "s3:DeleteObject", obj("system/canaries/acme/digits/production"))
    assert not allowed(cfn, g, "s3:PutObject", obj("tenants/acme/models/digits/3/model.onnx"))
    assert not allowed(cfn, g, "s3:DeleteObject", obj("tenants/acme/aliases/digits/production.json"))
    assert not allowed(cfn, g, "s3:GetObject", obj("system/keys/x.json"))


def test_canary_guard_runs_every_minute_on_an_eventbridge_schedule(cfn):
    (rule,) = [r for r in res(cfn, "AWS::Events::Rule").values() if "CanaryGuard" in json.dumps(r)]
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"


# ------------------------------------------------------------------ bucket
def test_bucket_is_private_encrypted_versioned_tls_only_and_expires_abandoned_uploads(cfn):
    from modelbay.storage.s3 import STAGING_TAG

    b = cfn["Resources"]["ModelBucket"]["Properties"]
    assert b["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert all(
        b["PublicAccessBlockConfiguration"][k] is True
        for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    )
    assert b["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {r["Id"]: r for r in b["LifecycleConfiguration"]["Rules"]}
    tag_key, tag_value = STAGING_TAG.split("=")
    assert rules["expire-abandoned-uploads"]["TagFilters"] == [{"Key": tag_key, "Value": tag_value}]
    assert rules["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1
    (st,) = cfn["Resources"]["ModelBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert st["Effect"] == "Deny" and st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_published_versions_lose_the_staging_tag_the_lifecycle_rule_expires(s3_bucket, mlp_path):
    """Otherwise the abandoned-upload rule would delete every registered model after a day."""
    import boto3

    from modelbay.registry import Registry
    from modelbay.storage.s3 import S3Store

    store = S3Store(s3_bucket, "")
    reg = Registry(store, "acme")
    import hashlib

    import httpx

    data = mlp_path.read_bytes()
    session = reg.create_upload("m", {"model.onnx": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}})
    t = session.targets["model.onnx"]
    assert httpx.put(t.url, content=data, headers=t.headers).status_code == 200
    s3 = boto3.client("s3")
    staged = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="tenants/acme/uploads/")["Contents"]
        if o["Key"].endswith("model.onnx")
    ]
    assert s3.get_object_tagging(Bucket=s3_bucket, Key=staged[0])["TagSet"] == [
        {"Key": "modelbay-staging", "Value": "true"}
    ]
    m = reg.register_upload("m", session.upload_id)
    key = f"tenants/acme/models/m/{m.version}/model.onnx"
    assert s3.get_object_tagging(Bucket=s3_bucket, Key=key)["TagSet"] == []


def test_samconfig_and_layer_makefile_agree_with_the_template():
    import tomllib

    cfg = tomllib.loads((ROOT / "infra/samconfig.toml").read_text())
    assert cfg["default"]["deploy"]["parameters"]["capabilities"] == "CAPABILITY_IAM"
    assert cfg["default"]["build"]["parameters"]["template_file"] == "template.yaml"
    make = (ROOT / "infra/layer/Makefile").read_text()
    assert "build-ModelbayLayer:" in make and "boto3" in make
    tpl = (ROOT / "template.yaml").read_text()
    assert "ContextPath: infra/layer" in tpl and "BuildMethod: makefile" in tpl
