"""Training data: the camera simulator (brackets from HDR scenes), raw unprocessing, dataset loaders.

Modules: `scenes` (source radiance crops), `camera` (response curves, noise, quantization),
`motion` (camera shake, moving objects), `realistic` and `layers` (layered scenes: parallax,
articulated and deforming subjects, blur), `simulator` (bracket synthesis), `raw` (Bayer pack/unpack,
unprocess/process), `kalantari` (Kalantari et al. scenes), `datasets`
(torch Dataset wrappers). Nothing is imported here eagerly but the error type, so importing one
loader does not pull in torch or the others.
"""

from emvnet.errors import EmvnetError


class DatasetError(EmvnetError):
    """A dataset folder does not have the layout its loader documents."""

    code = "invalid_dataset"


__all__ = ["DatasetError"]
