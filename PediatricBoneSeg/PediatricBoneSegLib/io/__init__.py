"""Files in and out, without PyTorch: ``volumes`` (reading and checking NIfTI, NRRD, MHA and DICOM
series), ``segmentation_file`` (Slicer's ``.seg.nrrd``), ``qc`` (the QC picture) and ``outputs``
(the case folder, written atomically). Importing this package imports none of them.
"""
