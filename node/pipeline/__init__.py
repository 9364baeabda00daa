"""From stored DICOM files to results: the glue between node I/O and the pure analysis.

Used by the node's ``analyze_study`` job and by the offline ``analyze`` command,
so both produce the same results from the same files.
"""
