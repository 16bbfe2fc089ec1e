"""Typed errors for input that the caller can fix.

Every error raised because of what a user sent (a file, an exposure list, an option) derives from
`EmvnetError` and carries a one-line message that says what is wrong and, where possible, what to do.
The CLI turns them into exit code 2; the service maps each class to an HTTP status and a gRPC code
in one table (`service/errors.py`). Anything else escaping the library is a bug.
"""

from __future__ import annotations


class EmvnetError(Exception):
    """Base class: the input (not the library) is at fault. `code` is stable and machine-readable."""

    code = "invalid_input"

    def __init__(self, message: str) -> None:
        assert "\n" not in message, "error messages are one line"
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self.args[0])


class UnsupportedFormatError(EmvnetError):
    """The bytes are not an image in a format we read (or the output extension is unknown)."""

    code = "unsupported_format"


class CorruptImageError(EmvnetError):
    """The image is truncated, damaged, or its data does not match its header."""

    code = "corrupt_image"


class ImageTooLargeError(EmvnetError):
    """The image claims more pixels (or bytes) than the configured limit allows."""

    code = "image_too_large"


class BracketError(EmvnetError):
    """The frames do not form a usable bracket: too few or too many, or of different sizes/kinds."""

    code = "invalid_bracket"


class ExposureError(EmvnetError):
    """Exposure times are missing where required, of the wrong count, or not positive finite numbers."""

    code = "invalid_exposures"


class UnknownModelError(EmvnetError):
    """The requested model name is not in the registry (or its weights are not installed)."""

    code = "unknown_model"


class DeviceError(EmvnetError):
    """The requested compute device is not available on this machine."""

    code = "device_unavailable"
