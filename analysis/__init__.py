"""Pure image analysis of sagittal lumbar MRI.

Volumes and geometry in, frozen dataclasses out. No DICOM, file or database
I/O happens in this package; SimpleITK is reached only through
:mod:`analysis.sitk_adapter`.
"""

ALGORITHM_VERSION = "0.1.0"
