"""Old import path of :mod:`reasoner.measure.psf`; import from there (this alias goes once no caller uses it)."""

from reasoner.measure.psf import MIN_DIP_DISK, MIN_DIP_MOTION, defocus_radius, motion_length

__all__ = ["MIN_DIP_DISK", "MIN_DIP_MOTION", "defocus_radius", "motion_length"]
