"""Worker settings: environment variables with the `EMVNET_` prefix, validated at startup.

The gateway's `service.settings.Settings` extends these (an embedded gateway runs the same batcher
and runner), so one variable means the same thing to every process. Obtain them through
`get_worker_settings()` or construct them in tests; nothing reads the environment at import time.
"""

from __future__ import annotations

from typing import Literal, Self, TypeVar

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from emvnet.errors import EmvnetError
from emvnet.io import DEFAULT_MAX_PIXELS

MIB = 1024 * 1024


class WorkerSettings(BaseSettings):
    """What a process that merges needs: the model, the batcher's knobs, the queue and its limits."""

    model_config = SettingsConfigDict(env_prefix="EMVNET_", extra="ignore", frozen=True)

    redis_url: str | None = Field(
        default=None, description="Redis for the queue, blobs and results; none = embedded worker"
    )
    model: str = Field(default="auto", description="default model of requests that name none")
    models: list[str] | None = Field(
        default=None, description="models a request may name (JSON list); none = every registered one"
    )
    device: str = "cpu"
    # The library's limit (`emvnet enhance` reads frames under the same one).
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, gt=0, description="per frame, as decoded")
    # Batching: a batch starts when it is full or when its oldest job has waited `max_wait_ms`;
    # a few ms cost little latency and let concurrent requests share a forward pass.
    max_batch_size: int = Field(default=4, ge=1, le=256)
    max_wait_ms: float = Field(default=5.0, ge=0, le=10_000)
    max_queue: int = Field(default=64, ge=1, description="jobs waiting before new ones are refused")
    job_ttl_s: int = Field(default=3600, ge=10, description="frames and results live this long in Redis")
    job_timeout_s: float = Field(default=300.0, gt=0, description="deadline of asynchronous jobs")
    # A task that runs past this is abandoned with an error. Redis redelivers unacknowledged tasks
    # after the visibility timeout, which must therefore exceed it, or a slow job runs twice.
    task_time_limit_s: float = Field(default=600.0, gt=0)
    visibility_timeout_s: float = Field(default=900.0, gt=0)
    worker_concurrency: int | None = Field(
        default=None, ge=1, le=512, description="task threads per worker; none = 2 x max_batch_size"
    )
    queue_name: str = Field(default="emvnet", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    key_prefix: str = Field(default="emvnet", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    warmup: bool = True
    jpeg_quality: int = Field(default=95, ge=1, le=100)
    exr_precision: Literal["half", "float"] = "half"
    heartbeat_s: float = Field(
        default=5.0, gt=0, description="a worker's readiness key is renewed this often"
    )
    # Orphan recovery: a worker whose heartbeat lapsed (3 periods) is dead; live workers look for
    # its jobs this often and queue them again, up to `max_requeues` times each (then worker_lost).
    orphan_scan_s: float = Field(default=5.0, gt=0, description="how often workers look for orphans")
    max_requeues: int = Field(default=3, ge=0, le=100, description="re-queues of one orphaned job")
    # A job queued longer than this whose task message is in neither the broker's queue nor its
    # unacknowledged set (on two scans in a row) lost its message: it is queued again like an orphan.
    queued_grace_s: float | None = Field(
        default=None, gt=0, description="before a queued job's missing message counts; none = 3 heartbeats"
    )
    metrics_port: int | None = Field(default=None, ge=0, le=65535, description="worker /metrics port")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.visibility_timeout_s <= self.task_time_limit_s:
            raise ValueError(
                f"visibility_timeout_s ({self.visibility_timeout_s}) must exceed task_time_limit_s "
                f"({self.task_time_limit_s}), or Redis redelivers jobs that are still running"
            )
        if self.job_timeout_s > self.task_time_limit_s:
            raise ValueError(
                f"job_timeout_s ({self.job_timeout_s}) must not exceed task_time_limit_s "
                f"({self.task_time_limit_s})"
            )
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"redis_url {self.redis_url!r} must start with redis://, rediss:// or unix://")
        return self

    @property
    def concurrency(self) -> int:
        """Task threads: enough to keep a full batch queued behind the one running."""
        return self.worker_concurrency or 2 * self.max_batch_size

    @property
    def max_wait_s(self) -> float:
        return self.max_wait_ms / 1000.0


class SettingsError(EmvnetError):
    """An EMVNET_* variable or a flag has a bad value (the CLI prints it and exits 2)."""

    code = "invalid_settings"


S = TypeVar("S", bound=BaseSettings)


def build_settings(cls: type[S], overrides: dict[str, object]) -> S:
    """`cls` from the environment with non-None overrides winning; one-line SettingsError if invalid."""
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise SettingsError(f"invalid settings (EMVNET_* variables or flags): {problems}") from None


def get_worker_settings(**overrides: object) -> WorkerSettings:
    """Settings from the environment, with explicit overrides (CLI flags) winning."""
    return build_settings(WorkerSettings, overrides)
