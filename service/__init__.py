"""The gateway: REST (FastAPI) and gRPC front ends that validate uploads and queue merge jobs.

Imports flow one way: `service -> worker -> emvnet`. The gateway itself arrives with the service
issue; until then this package only reserves its place in the layout.
"""
