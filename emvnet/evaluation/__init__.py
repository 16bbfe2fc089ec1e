"""Scoring merges: `metrics` (PSNR-mu/-l, SSIM, PU21), `fidelity` (ghost %, colour %, RF-PSNR against
the reference frame, no ground truth needed), `evaluate` (`emvnet eval`), `report` (sheets)."""
