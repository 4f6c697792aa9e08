"""The segmentation pipeline, stage by stage, on in-memory images (no file reading or writing):
``preprocessing`` (canonical slicing, normalization, resampling), ``embedding`` and ``detection``
(joint recognition, out-of-distribution warnings), ``acceleration`` (the fast inference path),
``inference`` (``segment_image``), ``postprocess`` (anatomical cleaning), ``surfaces`` (closed
meshes) and ``morphometry`` (measurements). Importing this package imports none of them.
"""
