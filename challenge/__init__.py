"""A frozen challenge set for the analysis, drawn by a second, independent generator (issue 19).

Nothing here is shared with ``phantom``'s anatomy or implant code: the
synthetic spine (:mod:`challenge.spine`), the lesions, benign look-alikes and
extra-osseous masses (:mod:`challenge.lesions`) and the thick-slice sampling
with gaps and partial volume (:mod:`challenge.slicing`) are written anew. Only
DICOM output reuses ``phantom.study.sagittal_series`` and
``phantom.writer.write_study`` (I/O helpers). The studies, their seeds and
parameters are fixed in ``frozen.toml``; :mod:`challenge.build` turns each
entry into DICOM series and a per-level truth. The set measures; it is never
used to train or calibrate.
"""
