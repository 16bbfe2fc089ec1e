"""Reusable network layers of EMVNet: RRDB (Sec. 3.1), 3D hourglass (Sec. 3.3), small blocks."""
