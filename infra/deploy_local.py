"""Deploy template.yaml's storage part to LocalStack without Docker (no Lambda there).

The bucket (encryption, versioning, public access block, lifecycle, TLS-only
policy) and the bootstrap-key secret are taken from template.yaml as they are,
deployed through CloudFormation at AWS_ENDPOINT_URL, and the outputs printed as
JSON. modelbay's own server then runs locally on that bucket (see infra/README.md).

Run with the SAM venv's Python (it has boto3 and SAM's YAML loader).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import boto3
from samcli.yamlhelper import yaml_parse

ROOT = Path(__file__).resolve().parents[1]
STORAGE = ("ModelBucket", "ModelBucketPolicy", "BootstrapKeySecret")


def storage_template(template: dict) -> dict:
    """The resources that need no Lambda, with the parameters and conditions they use."""
    text = json.dumps({k: template["Resources"][k] for k in STORAGE})
    params = {k: v for k, v in template["Parameters"].items() if f'"{k}"' in text}
    conds = {k: v for k, v in template.get("Conditions", {}).items() if f'"{k}"' in text}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "modelbay storage (LocalStack without Docker)",
        "Parameters": params,
        "Conditions": conds,
        "Resources": {k: template["Resources"][k] for k in STORAGE},
        "Outputs": {
            "BucketName": {"Value": {"Ref": "ModelBucket"}},
            "BootstrapKeySecretArn": {"Value": {"Ref": "BootstrapKeySecret"}},
        },
    }


def deploy(stack: str, template_path: Path = ROOT / "template.yaml") -> dict[str, str]:
    body = json.dumps(storage_template(yaml_parse(template_path.read_text())))
    cfn = boto3.client("cloudformation")
    try:
        cfn.describe_stacks(StackName=stack)
        exists = True
    except cfn.exceptions.ClientError:
        exists = False
    if exists:
        try:
            cfn.update_stack(StackName=stack, TemplateBody=body)
            cfn.get_waiter("stack_update_complete").wait(StackName=stack, WaiterConfig={"Delay": 1})
        except cfn.exceptions.ClientError as e:
            if "No updates" not in str(e):
                raise
    else:
        cfn.create_stack(StackName=stack, TemplateBody=body)
        cfn.get_waiter("stack_create_complete").wait(StackName=stack, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    outputs = cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    return {o["OutputKey"]: o["OutputValue"] for o in outputs}


# `make run` serves on 8080: a server on the LocalStack bucket takes the next port, so both can run.
SERVE_PORT = 8081


def bootstrap_key(stack: str) -> str:
    """The bootstrap (root) key: the value of the stack's Secrets Manager secret."""
    cfn = boto3.client("cloudformation")
    outputs = cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    arn = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "BootstrapKeySecretArn")
    return str(boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stack", default="modelbay")
    ap.add_argument("--print-key", action="store_true", help="print the deployed stack's bootstrap key and exit")
    args = ap.parse_args()
    if not os.environ.get("AWS_ENDPOINT_URL"):
        sys.exit("set AWS_ENDPOINT_URL to LocalStack's endpoint (infra/localstack.sh does)")
    if args.print_key:
        print(bootstrap_key(args.stack))
        return
    print(f"deploying the storage stack {args.stack!r} through LocalStack's CloudFormation…", file=sys.stderr)
    out = deploy(args.stack)
    print(json.dumps(out, indent=1))
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    aws = f"AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1"
    print(
        f"""
Serve modelbay on this bucket (management + inference, keys required; port {SERVE_PORT}, as `make run` uses 8080):
  {aws} \\
    MODELBAY_BOOTSTRAP_KEY_SECRET={out["BootstrapKeySecretArn"]} \\
    .venv/bin/modelbay serve --store s3://{out["BucketName"]}/ --port {SERVE_PORT}

Then, in another shell, call it with the bootstrap key (the secret's value):
  export MODELBAY_URL=http://127.0.0.1:{SERVE_PORT}
  export MODELBAY_API_KEY=$({aws} .venv-sam/bin/python infra/deploy_local.py --stack {args.stack} --print-key)
  .venv/bin/modelbay models
""",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
