"""Print the CloudFormation that SAM makes of template.yaml (offline), as JSON.

Run with the SAM venv's Python: `.venv-sam/bin/python infra/translate.py [template.yaml]`.
tests/test_template.py asserts the wiring on this output where LocalStack cannot
run the stack (no Docker: no Lambda).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the translator wants one; nothing is called

from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform


class NoManagedPolicies:
    """The template uses inline policies only; SAM's basic execution role is an ARN it knows."""

    def load(self):
        return {}


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "template.yaml")
    template = yaml_parse(path.read_text())
    # local code paths become s3://local/<path>, as `sam package` would upload them
    for res in template["Resources"].values():
        props = res.get("Properties", {})
        for field in ("CodeUri", "ContentUri"):
            if isinstance(props.get(field), str) and not props[field].startswith("s3://"):
                props[field] = f"s3://local/{props[field].strip('/')}"
    params = {
        "AWS::Region": "us-east-1",
        "AWS::AccountId": "123456789012",
        "AWS::Partition": "aws",
        "AWS::StackName": "modelbay",
        "AWS::URLSuffix": "amazonaws.com",
    }
    out = transform(template, params, NoManagedPolicies())
    json.dump(out, sys.stdout, indent=1, default=str)


if __name__ == "__main__":
    main()
