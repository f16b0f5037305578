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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stack", default="modelbay")
    args = ap.parse_args()
    if not os.environ.get("AWS_ENDPOINT_URL"):
        sys.exit("set AWS_ENDPOINT_URL to LocalStack's endpoint (infra/localstack.sh does)")
    out = deploy(args.stack)
    print(json.dumps(out, indent=1))
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    print(
        f"""
Serve modelbay on this bucket (management + inference, keys required):
  AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 \\
    MODELBAY_BOOTSTRAP_KEY_SECRET={out["BootstrapKeySecretArn"]} \\
    .venv/bin/modelbay serve --store s3://{out["BucketName"]}/
""",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
