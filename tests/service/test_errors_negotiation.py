"""The one error table covers every domain error; Accept negotiation picks formats or 406."""

from __future__ import annotations

import grpc
import pytest

from emvnet import errors as emvnet_errors
from service.api.app import create_app
from service.errors import ERROR_TABLE, GatewayError, describe
from service.negotiation import choose_format
from service.settings import Settings
from worker import jobs

DOMAIN_ERRORS = [
    cls
    for module in (emvnet_errors, jobs)
    for cls in vars(module).values()
    if isinstance(cls, type) and issubclass(cls, emvnet_errors.EmvnetError | jobs.JobError)
]


@pytest.mark.parametrize("cls", DOMAIN_ERRORS, ids=lambda c: c.__name__)
def test_every_domain_error_has_a_row(cls: type) -> None:
    """Each typed error maps to an HTTP status and a gRPC code in the table."""
    assert cls.code in ERROR_TABLE  # type: ignore[attr-defined]


def test_gateway_errors_have_rows() -> None:
    for cls in GatewayError.__subclasses__():
        if cls.__name__ != "JobFailedError":
            assert cls.code in ERROR_TABLE


def test_transports_answer_alike() -> None:
    """Input errors are 4xx/INVALID_ARGUMENT; saturation is retryable 429/RESOURCE_EXHAUSTED."""
    info = describe(emvnet_errors.BracketError("x"))
    assert (info.http_status, info.grpc_code) == (422, grpc.StatusCode.INVALID_ARGUMENT)
    info = describe(jobs.QueueFullError("x"))
    assert (info.http_status, info.grpc_code, info.retry) == (429, grpc.StatusCode.RESOURCE_EXHAUSTED, True)
    assert describe(jobs.DeadlineExceededError("x")).grpc_code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert describe(emvnet_errors.UnsupportedFormatError("x")).http_status == 415


def test_unknown_exceptions_are_internal_without_details() -> None:
    info = describe(RuntimeError("secret path /etc/x"))
    assert info.http_status == 500 and "secret" not in info.message


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        (None, "png"),
        ("*/*", "png"),
        ("image/*", "png"),
        ("image/x-exr", "exr"),
        ("image/vnd.radiance", "hdr"),
        ("image/tiff;q=0.5, image/jpeg;q=0.9", "jpeg"),
        ("image/png;q=0, image/*;q=0.5", "jpeg"),
        ("text/html, image/tiff", "tiff"),
        ("image/avif", "avif"),
        ("image/jpeg", "jpeg"),  # a plain JPEG stays SDR
        ("image/jpeg; gainmap=1", "uhdr"),
        ('image/jpeg;q=0.8;gainmap="true"', "uhdr"),
        ("image/jpeg;gainmap=0", "jpeg"),
        ("image/jpeg;gainmap=1;q=0.5, image/jpeg", "jpeg"),
        # A browser's <img> Accept weighs AVIF like any image: the server's preference, SDR PNG, wins.
        ("image/avif,image/webp,image/*,*/*;q=0.8", "png"),
    ],
)
def test_accept_negotiation(accept: str | None, fmt: str) -> None:
    assert choose_format(accept) == fmt


@pytest.mark.parametrize("accept", ["image/webp", "text/html", "image/*;q=0"])
def test_nothing_acceptable_is_406(accept: str) -> None:
    with pytest.raises(GatewayError) as info:
        choose_format(accept)
    assert describe(info.value).http_status == 406


def test_format_parameter_wins() -> None:
    assert choose_format("image/png", "exr") == "exr"
    assert choose_format(None, "jpg") == "jpeg"


@pytest.mark.parametrize("name", ["uhdr", "ultrahdr", "UltraHDR", "gainmap"])
def test_gain_map_format_names(name: str) -> None:
    """The names users of Ultra HDR would guess all ask for the gain-map JPEG."""
    assert choose_format("image/jpeg", name) == "uhdr"
    assert choose_format(None, "avif") == "avif"


def test_api_keys_split_on_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    """EMVNET_API_KEYS=a,b configures two keys; bad frame limits fail fast."""
    monkeypatch.setenv("EMVNET_API_KEYS", "k1, k2")
    assert Settings().api_keys == ["k1", "k2"]
    with pytest.raises(ValueError, match="min_frames"):
        Settings(min_frames=5, max_frames=3)


def test_openapi_lists_the_hdr_formats() -> None:
    """The OpenAPI schema offers image/avif and documents uhdr and avif for ?format=."""
    spec = create_app(Settings()).openapi()
    post = spec["paths"]["/v1/hdr"]["post"]
    assert "image/avif" in post["responses"]["200"]["content"]
    (fmt,) = [p for p in post["parameters"] if p["name"] == "format"]
    assert "uhdr" in fmt["description"] and "avif" in fmt["description"]
    result = spec["paths"]["/v1/jobs/{job_id}/result"]["get"]["responses"]["200"]["content"]
    assert "image/avif" in result
