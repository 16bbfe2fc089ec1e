"""The network (paper Sec. 3) and its engine.

`config` (the named variants), `layers/`, `matching_volume`, `model` (EMVNet), `checkpoint`
(safetensors + JSON weights) and `engine` (precision, tiling, batching: the networks as named
models). Built on `emvnet.merge`; nothing here trains or evaluates.
"""
