"""Old import path of :mod:`reasoner.measure.semantics`; import from there (this alias goes once no caller uses it)."""

from reasoner.measure.semantics import describe, detect_faces, scene_stats

__all__ = ["describe", "detect_faces", "scene_stats"]
