"""`python -m soak`: the reliability suite's long form and its summary table (see soak/RESULTS.md).

The scenarios live once, in tests/reliability; this package runs them with ADF_SOAK=1 (more trials
per fault), collects what each trial measured, prints the table and writes soak/RESULTS.md.
"""
