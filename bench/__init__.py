"""`make bench`: the engine against hand-written baselines on the same data, in one run.

Every figure is a ratio of rows/s measured in the same process on the same server and rows, so
the numbers compare paths, not machines. See bench/RESULTS.md for the last full run.
"""
