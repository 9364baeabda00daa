"""Lumbar Sentinel DICOM node: receive, store, queue, analyse, send."""
