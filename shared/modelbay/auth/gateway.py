"""Mirror modelbay keys into an API Gateway usage plan (throttling and quota per key on AWS).

API Gateway meters only keys it knows, sent as ``x-api-key``. Each modelbay key
is registered there with the same value, so one secret passes the gateway's
usage plan and modelbay's own check (which still decides scopes and tenant).
"""

from __future__ import annotations

import contextlib
import logging

from ..errors import StoreUnavailable

log = logging.getLogger("modelbay.auth")


class UsagePlanKeys:
    def __init__(self, plan_name: str, client=None) -> None:
        self.plan_name = plan_name
        self._client = client
        self._plan_id: str | None = None

    @property
    def client(self):
        if self._client is None:
            import boto3

            self._client = boto3.client("apigateway")
        return self._client

    def plan_id(self) -> str:
        # Looked up by name: the template cannot hand the id to the function without a cycle
        if self._plan_id is None:
            for page in self.client.get_paginator("get_usage_plans").paginate():
                for plan in page.get("items", []):
                    if plan["name"] == self.plan_name:
                        self._plan_id = plan["id"]
                        return self._plan_id
            raise StoreUnavailable(f"usage plan {self.plan_name!r} not found")
        return self._plan_id

    def add(self, key_id: str, tenant: str, value: str) -> str:
        try:
            gw = self.client.create_api_key(
                name=f"modelbay-{tenant}-{key_id}",
                value=value,
                enabled=True,
                description=f"modelbay key {key_id} of tenant {tenant}",
            )
            self.client.create_usage_plan_key(usagePlanId=self.plan_id(), keyId=gw["id"], keyType="API_KEY")
        except StoreUnavailable:
            raise
        except Exception as e:
            log.exception("could not register key %s with API Gateway", key_id)
            raise StoreUnavailable(f"could not register the key with API Gateway: {e}") from None
        return gw["id"]

    def remove(self, gateway_key_id: str) -> None:
        missing = self.client.exceptions.NotFoundException
        # AWS drops plan keys with their API key; emulators may not, so say it
        with contextlib.suppress(missing):
            self.client.delete_usage_plan_key(usagePlanId=self.plan_id(), keyId=gateway_key_id)
        with contextlib.suppress(missing):
            self.client.delete_api_key(apiKey=gateway_key_id)
