"""Training the shipped weights: never on the path that serves a request.

`data/` (the camera simulator, motion, raw unprocessing, dataset loaders), `losses/`, `trainer`,
`config` (typed TOML configs), `distill` (Sec. 5.4.3), `plots`, and `command` (`emvnet train`).
"""
