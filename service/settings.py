"""Gateway settings: the worker's (an embedded gateway merges too) plus the front ends' limits.

Environment variables with the `EMVNET_` prefix; bad values fail at startup with pydantic's message.
Obtain them through `get_settings()` (or construct `Settings(...)` in tests): nothing is read at
import time.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from worker.settings import MIB, WorkerSettings, build_settings


class Settings(WorkerSettings):
    """Everything `emvnet serve` reads."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535, description="REST port; 0 = any free port")
    grpc_port: int | None = Field(default=50051, ge=0, le=65535, description="none = no gRPC server")
    # Comma-separated in the environment (EMVNET_API_KEYS=key1,key2); empty = no authentication.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    min_frames: int = Field(default=2, ge=2)
    max_frames: int = Field(default=8, ge=2, le=64)
    max_request_bytes: int = Field(default=200 * MIB, gt=0, description="one upload, all frames")
    sync_timeout_s: float = Field(default=60.0, gt=0, description="how long a synchronous call waits")
    # A client that stops sending mid-upload would hold its connection and memory forever.
    body_timeout_s: float = Field(default=30.0, gt=0, description="longest pause within an upload")
    retry_after_s: int = Field(default=1, ge=1, description="Retry-After when saturated")
    grpc_max_concurrent_streams: int = Field(default=64, ge=1)
    graceful_stop_s: float = Field(default=10.0, ge=0)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @model_validator(mode="after")
    def _frames_range(self) -> Self:
        if self.min_frames > self.max_frames:
            raise ValueError(f"min_frames ({self.min_frames}) exceeds max_frames ({self.max_frames})")
        if self.sync_timeout_s > self.task_time_limit_s:
            raise ValueError(
                f"sync_timeout_s ({self.sync_timeout_s}) must not exceed task_time_limit_s "
                f"({self.task_time_limit_s})"
            )
        return self

    @property
    def embedded(self) -> bool:
        """No Redis: the gateway merges in process."""
        return self.redis_url is None


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags) winning."""
    return build_settings(Settings, overrides)
