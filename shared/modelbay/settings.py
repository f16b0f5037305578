"""Every setting modelbay reads, in one place, with the environment variable that sets it.

``Settings()`` is pure: the defaults below, nothing read from the process.
``Settings.from_env()`` is the one reader of the environment (the same names
on Lambda and locally); a bad value is refused with the variable's name.
Each field's docstring is its documentation (``modelbay settings`` prints them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import locations
from .errors import BadRequest

MB = 1024**2
_HOME_ENV: dict[str, str] = {}


class SettingsError(BadRequest):
    code = "bad_setting"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class Limits(_Section):
    """Resource limits: each has a safe default and answers a clear 4xx when hit."""

    max_model_bytes: int = Field(2 * 1024**3 - 1, ge=1)
    """Largest model.onnx accepted (bytes): a protobuf cannot exceed 2 GiB without external data, which is refused."""
    max_folder_bytes: int = Field(8 * 1024**3, ge=1)
    """Largest Hugging Face model folder ``modelbay push`` reads (all its files, and any one of them), in bytes."""
    max_side_file_bytes: int = Field(64 * MB, ge=1)
    """Largest side file (e.g. tokenizer.json) accepted, in bytes."""
    max_side_files: int = Field(8, ge=0)
    """Most side files per version."""
    upload_ttl_seconds: int = Field(3600, ge=60, json_schema_extra={"env": "MODELBAY_UPLOAD_TTL"})
    """Seconds an upload session (and its presigned URLs) stays valid; older staged uploads are swept."""
    max_body_bytes: int = Field(6 * MB, ge=1)
    """Largest request body (bytes); 6 MiB is Lambda's synchronous payload limit."""
    max_instances: int = Field(256, ge=1)
    """Most instances (batch rows) in one inference request."""
    max_output_bytes: int = Field(64 * MB, ge=1)
    """Largest result of one inference (bytes of output tensors) returned to a client; more is a 413."""
    max_prompt_tokens: int = Field(2048, ge=1)
    """Longest prompt (in tokens) a language model is given; longer ones get a 413."""
    max_new_tokens: int = Field(512, ge=1)
    """Cap on ``max_tokens`` (tokens generated per prompt); also the default when a request names none."""
    max_prompts: int = Field(8, ge=1)
    """Most prompts generated together in one request (one batch)."""
    generation_seconds: float = Field(25.0, gt=0)
    """Wall time one generation may run; it then ends with finish_reason "length" (25 s fits API Gateway's 29)."""
    max_concurrent_generations: int = Field(4, ge=1)
    """Generations running at once in one process; more get a 429 (each holds a KV cache and a core)."""


class Settings(_Section):
    # ------------------------------------------------------------ storage
    store_url: str = Field(
        default_factory=lambda: locations.default_store(_HOME_ENV), json_schema_extra={"env": "MODELBAY_STORE"}
    )
    """The registry: a directory (embedded store) or ``s3://bucket/prefix``; default $XDG_DATA_HOME/modelbay/store."""
    default_tenant: str = Field("default", json_schema_extra={"env": "MODELBAY_TENANT"})
    """Tenant of callers when API keys are off, and of the local server's own metrics."""
    cache_dir: Path = Field(default_factory=lambda: locations.cache_dir(_HOME_ENV))
    """Model files fetched for serving; $XDG_CACHE_HOME/modelbay, or /tmp/modelbay-cache on Lambda."""
    limits: Limits = Field(default_factory=Limits)
    # Sized for Lambda behind API Gateway (29 s): retries end within s3_retry_seconds, and the attempt
    # then in flight within its timeouts, so a call answers 503 before the gateway gives up on it.
    s3_connect_timeout: float = Field(3.0, gt=0)
    """Seconds to open a connection to S3 before the attempt counts as failed."""
    s3_read_timeout: float = Field(10.0, gt=0)
    """Seconds S3 may stay silent on an open connection (per read, not per object)."""
    s3_retry_attempts: int = Field(8, ge=1)
    """Most attempts of one S3 call (throttling, 5xx, dropped connections, timeouts are retried)."""
    s3_retry_seconds: float = Field(12.0, ge=0)
    """Seconds one S3 call keeps retrying (exponential backoff with jitter); then a 503 says try again."""

    # --------------------------------------------------------------- auth
    auth: bool = True
    """API keys are required unless this is off (``modelbay serve --no-auth``)."""
    bootstrap_key: str | None = None
    """An operator key that is not in the store (its value). Prefer the secret below on AWS."""
    bootstrap_key_secret: str | None = None
    """ARN of a Secrets Manager secret holding the operator key."""
    usage_plan: str | None = None
    """API Gateway usage plan that mirrors every key (per-key throttling and quota on AWS)."""
    key_cache_seconds: float = Field(30.0, ge=0)
    """Seconds a verified key is trusted before the store is read again (revocation delay)."""

    # ------------------------------------------------------------ serving
    alias_ttl: float = Field(5.0, ge=0)
    """Seconds an alias answer is reused by the inference engine before the store is read again."""
    prewarm: list[str] = []
    """References loaded at start, comma-separated: ``name:alias,name@3``."""
    session_cache_mb: int | None = Field(None, ge=1)
    """Budget of the in-memory session LRU (MiB). Default: half the Lambda function's memory, else 2048."""
    disk_cache_mb: int = Field(400, ge=1)
    """Budget of the on-disk model cache (MiB). Lambda's /tmp is 512 MB unless configured otherwise."""
    inference_timeout_ms: float | None = Field(None, gt=0)
    """Wall-time limit of one inference (milliseconds): onnxruntime is told to terminate the run, and the
    caller gets a 504. Default 30 s; on Lambda, 1.5 s less than the function's timeout when that is shorter,
    so the caller gets this 504 rather than the function's own timeout."""
    function_timeout_seconds: float | None = Field(None, gt=0)
    """The Lambda function's timeout (seconds), which Lambda does not tell the process: the stack sets it
    from ``InferenceTimeout`` so that runs end before the function does."""
    inference_memory_mb: int | None = Field(None, ge=16)
    """Memory all inference runs of this process may use together for intermediate tensors (MiB; the weights
    are not counted); a run that needs more is a 413. Default: a quarter of the Lambda function's memory,
    else 1024."""
    max_inferences: int = Field(32, ge=1)
    """Inferences in flight at once on a server; past it, requests get a 503 with Retry-After.
    Health and management routes never wait behind them."""
    max_tenant_inferences: int = Field(8, ge=1)
    """Inferences in flight at once for one tenant; past it, that tenant's requests get a 429 with Retry-After."""
    shutdown_grace_seconds: float = Field(10.0, ge=0)
    """Seconds the local server waits for open requests when told to stop (runs in flight are terminated at
    once)."""
    ort_threads: int | None = Field(None, ge=1)
    """onnxruntime intra-op threads, fixed. Default: tuned, else the CPUs this process may really use."""
    ort_opt: Literal["disable", "basic", "extended", "all"] | None = None
    """onnxruntime graph optimisation level, fixed (at least extended on x86-64 without VNNI: exact int8 needs it).
    Default: tuned, else basic."""
    ort_spin: bool | None = None
    """Let onnxruntime's worker threads spin, fixed. Default: tuned, else off (suits Lambda's fractional vCPUs)."""
    ort_tune: Literal["auto", "off", "latency", "throughput"] = "auto"
    """Time candidate session settings at a version's first load on a CPU and keep the fastest (recorded per
    model and CPU in the cache dir): ``latency`` for one request at a time, ``throughput`` for overlapping
    requests. ``auto``: throughput on a local server, off on Lambda (it would lengthen cold starts)."""
    ort_tune_budget_ms: float = Field(2000.0, ge=0)
    """Time limit of tuning one version (milliseconds, session builds included; no candidate starts after it,
    the one under way finishes)."""

    # ------------------------------------------------------------ metrics
    metrics: Literal["memory", "emf", "cloudwatch", "off"] | None = None
    """Metrics sink. Default: ``emf`` on Lambda (the log line is the metric), else ``memory``."""
    metrics_namespace: str = "modelbay"
    """CloudWatch namespace of the metrics."""
    metrics_retention: float = Field(24 * 3600.0, gt=0)
    """Seconds the in-memory metrics keep their series."""
    metrics_flush_seconds: float = Field(10.0, gt=0)
    """Seconds between PutMetricData batches (``cloudwatch`` sink)."""
    capture_buffer_records: int = Field(10_000, ge=1)
    """Most captured requests held in memory before they are written; past it new ones are dropped (counted)."""
    capture_batch_records: int = Field(500, ge=1)
    """Captured requests per written object (JSON Lines, gzip'd); a batch is also written every flush interval."""
    capture_flush_seconds: float = Field(10.0, gt=0)
    """Seconds between writes of captured requests."""
    shadow_queue: int = Field(100, ge=1)
    """Most shadow runs waiting; past it a sampled request is not shadowed (counted as dropped)."""
    canary_check_seconds: float = Field(30.0, ge=0)
    """Seconds between the local server's checks of canary guard rails (0: off). On AWS a schedule runs them."""

    # ------------------------------------------------------------- client
    url: str = "http://127.0.0.1:8080"
    """The server the CLI and the TUI talk to."""
    api_key: str | None = None
    """API key of the CLI and the TUI; else the one saved for the server's URL."""
    client_retry_attempts: int = Field(5, ge=1)
    """Most attempts of one client call that is safe to repeat (dropped connections, 502/503/504)."""
    client_retry_seconds: float = Field(30.0, ge=0)
    """Seconds the CLI and the TUI keep retrying one call before they report the failure."""
    config_dir: Path = Field(default_factory=lambda: locations.config_dir(_HOME_ENV))
    """Credentials and connection profiles ($XDG_CONFIG_HOME/modelbay)."""
    config: Path | None = None
    """The TUI's connection-profiles file. Default: profiles.json in the config dir."""
    examples_cache: Path = Field(default_factory=lambda: locations.examples_cache(_HOME_ENV))
    """Where built example models are cached ($XDG_CACHE_HOME/modelbay/examples)."""

    # ------------------------------------------------------------ console
    console_max_sessions: int = Field(8, ge=1)
    """Most browser sessions ``modelbay console`` runs at once (each is its own TUI process, ~150 MB resident)."""
    console_idle_seconds: float = Field(900.0, gt=0)
    """Seconds without a key press or click before a console session's process is stopped."""
    console_upload_mb: int = Field(512, ge=1)
    """Most bytes (MiB) a console session's folder may hold of files uploaded from the browser."""
    console_token: str | None = Field(None, min_length=16)
    """The console's login token (the one in the URL it prints); default: a new random one at each start."""

    # ------------------------------------------------------- Lambda's own
    lambda_function: str | None = Field(None, json_schema_extra={"env": "AWS_LAMBDA_FUNCTION_NAME"})
    """Set by Lambda: the function's name; its presence means the process runs on Lambda."""
    lambda_memory_mb: int | None = Field(None, json_schema_extra={"env": "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"})
    """Set by Lambda: the function's memory (MiB)."""

    @field_validator("prewarm", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [r.strip() for r in v.split(",") if r.strip()]
        return v

    # ---------------------------------------------------------- derived
    @property
    def on_lambda(self) -> bool:
        return bool(self.lambda_function)

    @property
    def credentials_file(self) -> Path:
        return self.config_dir / "credentials.json"

    @property
    def profiles_file(self) -> Path:
        return self.config or self.config_dir / "profiles.json"

    @property
    def session_cache_bytes(self) -> int:
        if self.session_cache_mb is not None:
            return self.session_cache_mb * MB
        if self.lambda_memory_mb:  # leave half to Python, requests and onnxruntime's arena
            return self.lambda_memory_mb * MB // 2
        return 2048 * MB

    @property
    def inference_timeout_seconds(self) -> float:
        if self.inference_timeout_ms is not None:
            return self.inference_timeout_ms / 1000
        if self.function_timeout_seconds:
            return max(1.0, min(30.0, self.function_timeout_seconds - 1.5))
        return 30.0

    @property
    def inference_memory_bytes(self) -> int:
        if self.inference_memory_mb is not None:
            return self.inference_memory_mb * MB
        if self.lambda_memory_mb:
            return max(64, self.lambda_memory_mb // 4) * MB
        return 1024 * MB

    @property
    def metrics_mode(self) -> str:
        return self.metrics or ("emf" if self.on_lambda else "memory")

    # ------------------------------------------------------ environment
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every variable below from ``environ`` (default: the process environment).

        ``overrides`` (e.g. a CLI flag) win over the environment.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "store_url": locations.default_store(env),
            "cache_dir": locations.cache_dir(env),
            "config_dir": locations.config_dir(env),
            "examples_cache": locations.examples_cache(env),
        }
        limits: dict[str, Any] = {}
        for target, model in ((values, cls), (limits, Limits)):
            for field, var in env_names(model).items():
                raw = env.get(var)
                if raw is not None and raw.strip() != "":
                    target[field] = raw.strip()
        values["limits"] = limits
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValidationError as e:
            raise _named(e, env) from None


def env_names(model: type[BaseModel]) -> dict[str, str]:
    """Field -> environment variable: ``MODELBAY_<FIELD>`` unless the field names its own."""
    out = {}
    for field, info in model.model_fields.items():
        if field == "limits":
            continue
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        out[field] = str(extra.get("env") or f"MODELBAY_{field.upper()}")
    return out


def _named(e: ValidationError, env: Mapping[str, str]) -> SettingsError:
    """The first error, named by the variable a user set rather than by a field."""
    err = e.errors()[0]
    loc = [str(p) for p in err.get("loc", ())]
    model: type[BaseModel] = Limits if loc[:1] == ["limits"] and len(loc) > 1 else Settings
    field = loc[1] if model is Limits else (loc[0] if loc else "")
    var = env_names(model).get(field, field)
    value = env.get(var)
    shown = f"={value!r}" if value is not None else ""
    return SettingsError(f"{var}{shown}: {err.get('msg', 'invalid value')}", setting=var)
