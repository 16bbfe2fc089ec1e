"""The REST front end: one router per resource (hdr, jobs, health), thin handlers."""

from service.api.app import create_app

__all__ = ["create_app"]
