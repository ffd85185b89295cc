"""Performance measurements of vlmalign on the offline `mini` model (`python -m benchmarks`).

Each measurement lives in its own module and returns a `results.Measured`; `__main__` runs the
ones asked for, prints the table and writes `benchmarks/results.json`. `gpu.py` is apart: a
self-contained script for a GPU machine (it imports nothing from vlmalign).
"""
