"""The node measured side by side with what users would pick instead (issue 21).

``python -m benchmarks [--quick]`` runs every figure against its reference in
the same invocation: the runs alternate, each figure is the median of several,
and each ratio is taken per pair of neighbouring runs, then its median.
"""
