"""Output format from the `Accept` header (RFC 9110 q-values), or NotAcceptableError (406).

An Ultra HDR file is a JPEG on the wire (`image/jpeg`, which every client can show), so a plain
`image/jpeg` stays the SDR JPEG: a client asks for the gain map with the media-type parameter
`image/jpeg; gainmap=1` or with `?format=uhdr` (or `ultrahdr`, `gainmap`). HDR AVIF is `image/avif`.
"""

from __future__ import annotations

from service.errors import NotAcceptableError
from worker.jobs import CONTENT_TYPES, OutputFormat

# Server preference when the client weighs several equally (a wildcard means "anything"): a
# tonemapped PNG is what a browser or a generic client can show.
PREFERENCE: tuple[OutputFormat, ...] = ("png", "jpeg", "exr", "hdr", "tiff", "avif", "uhdr")
GAIN_MAP_RANGE = "image/jpeg;gainmap"  # how `parse_accept` names `image/jpeg; gainmap=1`
MEDIA_TYPES: dict[str, OutputFormat] = {
    media: fmt  # type: ignore[misc]
    for fmt, media in CONTENT_TYPES.items()
    if fmt != "uhdr"
}
MEDIA_TYPES.update(
    {"image/x-radiance": "hdr", "image/exr": "exr", "image/tif": "tiff", GAIN_MAP_RANGE: "uhdr"}
)
ALIASES: dict[str, OutputFormat] = {
    "jpg": "jpeg",
    "tif": "tiff",
    "radiance": "hdr",
    "ultrahdr": "uhdr",
    "gainmap": "uhdr",
}
FORMAT_HELP = (
    "png, jpeg (SDR), uhdr (Ultra HDR gain-map JPEG), avif (HDR, BT.2020 PQ), tiff, hdr or exr; "
    "overrides Accept"
)
_FALSE = frozenset({"0", "false", "no", "off"})


def parse_accept(header: str) -> list[tuple[str, float]]:
    """(media range, q) pairs; malformed q-values count as 1 rather than failing the request.

    `image/jpeg` with a true `gainmap` parameter comes out as `GAIN_MAP_RANGE`.
    """
    ranges = []
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        if not media:
            continue
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            name = name.strip().lower()
            if name == "q":
                try:
                    q = min(1.0, max(0.0, float(value)))
                except ValueError:
                    q = 1.0
            elif name == "gainmap" and media == "image/jpeg" and value.strip(' "').lower() not in _FALSE:
                media = GAIN_MAP_RANGE
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
        name = ALIASES.get(name, name)
        if name not in CONTENT_TYPES:
            raise NotAcceptableError(f"format {explicit!r} is not one of {', '.join(PREFERENCE)}")
        return name  # type: ignore[return-value]
    if not accept or not accept.strip():
        return PREFERENCE[0]
    ranges = parse_accept(accept)
    scored = [(fmt, accept_quality(fmt, ranges)) for fmt in PREFERENCE]
    best_q = max(q for _, q in scored)
    if best_q <= 0:
        offered = ", ".join(dict.fromkeys(CONTENT_TYPES[f] for f in PREFERENCE)) + f", {GAIN_MAP_RANGE}=1"
        raise NotAcceptableError(f"cannot produce any of {accept!r}; available: {offered}")
    return next(fmt for fmt, q in scored if q == best_q)
