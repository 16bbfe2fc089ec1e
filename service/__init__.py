"""The gateway: REST (FastAPI) and gRPC front ends that validate uploads and queue merge jobs.

Imports flow one way: `service -> worker -> emvnet`. Layout: `settings` (EMVNET_* environment),
`errors` (the one table of HTTP statuses and gRPC codes), `validation` and `negotiation` (what is
checked before queueing), `backends` (embedded batcher or Redis + Celery),
`api/` (routers per resource), `grpc_server` / `grpc_stream`, `metrics`, and `cli` (`emvnet serve`).
Generated protobuf stubs live in `_generated/` (scripts/gen_proto.py; never edit by hand).
"""
