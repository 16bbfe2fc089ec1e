"""Output format from the `Accept` header (RFC 9110 q-values), or NotAcceptableError (406)."""

from __future__ import annotations

from service.errors import NotAcceptableError
from worker.jobs import CONTENT_TYPES, OutputFormat

# Server preference when the client weighs several equally (a wildcard means "anything"): a
# tonemapped PNG is what a browser or a generic client can show.
PREFERENCE: tuple[OutputFormat, ...] = ("png", "jpeg", "exr", "hdr", "tiff")
MEDIA_TYPES: dict[str, OutputFormat] = {v: k for k, v in CONTENT_TYPES.items()}  # type: ignore[misc]
MEDIA_TYPES.update({"image/x-radiance": "hdr", "image/exr": "exr", "image/tif": "tiff"})


def parse_accept(header: str) -> list[tuple[str, float]]:
    """(media range, q) pairs; malformed q-values count as 1 rather than failing the request."""
    ranges = []
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        if not media:
            continue
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(value)))
                except ValueError:
                    q = 1.0
        ranges.append((media, q))
    return ranges


def accept_quality(fmt: OutputFormat, ranges: list[tuple[str, float]]) -> float:
    """The q of the most specific range matching `fmt` (exact > image/* > */*), 0 if none."""
    exact = [q for m, q in ranges if MEDIA_TYPES.get(m) == fmt]
    if exact:
        return max(exact)
    for wildcard in ("image/*", "*/*"):
        matches = [q for m, q in ranges if m == wildcard]
        if matches:
            return max(matches)
    return 0.0


def choose_format(accept: str | None, explicit: str | None = None) -> OutputFormat:
    """The best output format for an Accept header; an explicit `format` query parameter wins."""
    if explicit:
        name = explicit.lower()
        if name in ("jpg", "tif", "radiance"):
            name = {"jpg": "jpeg", "tif": "tiff", "radiance": "hdr"}[name]
        if name not in CONTENT_TYPES:
            raise NotAcceptableError(f"format {explicit!r} is not one of {', '.join(PREFERENCE)}")
        return name  # type: ignore[return-value]
    if not accept or not accept.strip():
        return PREFERENCE[0]
    ranges = parse_accept(accept)
    scored = [(fmt, accept_quality(fmt, ranges)) for fmt in PREFERENCE]
    best_q = max(q for _, q in scored)
    if best_q <= 0:
        offered = ", ".join(CONTENT_TYPES[f] for f in PREFERENCE)
        raise NotAcceptableError(f"cannot produce any of {accept!r}; available: {offered}")
    return next(fmt for fmt, q in scored if q == best_q)
