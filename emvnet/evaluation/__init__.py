"""Scoring merges: `metrics` (PSNR-mu/-l, SSIM, PU21), `evaluate` (`emvnet eval`), `report` (sheets)."""
