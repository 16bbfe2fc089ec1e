"""Workers: the Celery app, the dynamic batcher and the model runner around `emvnet.Enhancer`.

Imports flow one way: `service -> worker -> emvnet`. The workers arrive with the service issue;
until then this package only reserves its place in the layout.
"""
