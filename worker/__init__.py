"""Workers: the Celery app, the dynamic batcher and the model runner around `emvnet.Enhancer`.

Imports flow one way: `service -> worker -> emvnet`. Layout: `settings`, `jobs` (what crosses Redis
as JSON), `runner` (load / warm up / run a batch), `batcher` (max batch size, max wait, deadlines),
`store` (frames and results in Redis with a TTL), `celery_app` (JSON-only Celery and the merge
task), `metrics`, `logs`, and `cli` (`emvnet worker`).
"""
