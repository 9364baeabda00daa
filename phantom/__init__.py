"""Synthetic and real-anatomy lumbar MRI test studies with known ground truth.

- ``implants``: implant marrow lesions, cortical breakout with soft-tissue
  extension and compression fractures into any sagittal multi-sequence volume
  (pure numpy; stable API, see its docstring). Types in ``specs``.
- ``spine`` / ``anatomy`` / ``tissues`` / ``render``: the synthetic spine (T11-sacrum, lordosis), its
  tissue map and its MR signal on sagittal and axial grids.
- ``study``: ``build_phantom`` -> ``PhantomStudy`` (series, label map, truth).
- ``wrap``: ``wrap_volume`` / ``load_volume`` for the shared real volumes.
- ``writer`` / ``enhanced`` / ``output``: DICOM (MR Image or Enhanced MR,
  lossless compression), ``truth.json``, ``labels.nii.gz``, ``lesions.nii.gz``
  and the mid-sagittal preview PNG.
- ``cli``: ``lumbar-sentinel phantom OUT_DIR`` (``configure``, ``run``).
"""
