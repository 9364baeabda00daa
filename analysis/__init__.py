"""Pure image analysis of sagittal lumbar MRI.

Volumes and geometry in, frozen dataclasses out. No DICOM, file or database
I/O happens in this package; SimpleITK is reached only through
:mod:`analysis.sitk_adapter`.
"""

# Raised whenever the networks, a rule or a threshold changes what the analysis reports: a
# study analysed again under a new version gets new result objects (results contract).
ALGORITHM_VERSION = "0.6.9"
