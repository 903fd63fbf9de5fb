"""Graspable objects: the embedded library, YCB and mesh folders, fast SDFs, convex pieces."""

from pipeline.objects.asset import ObjectAsset
from pipeline.objects.library import ObjectLibrary, load_object_library

__all__ = ["ObjectAsset", "ObjectLibrary", "load_object_library"]
