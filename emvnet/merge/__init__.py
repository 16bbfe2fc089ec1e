"""Bracket analysis and the classical merges: what every model builds on, no network in it.

`bracket` (exposures, reference, response reading), `response` (camera response calibration),
`align` (global pre-alignment), `fusion` (the deghosted radiance merge, the networks' prior),
`classical` (OpenCV Debevec / Robertson / Mertens and `weighted` as named models),
`isp_prior` (the E2E-ISP's display prior) and `merger` (the `Merger` / `ModelSpec` contract).
Imports point down only, to `emvnet.io`, `emvnet.frame` and `emvnet.errors`.
"""
