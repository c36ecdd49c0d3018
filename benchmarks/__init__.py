"""Measurements of the project, run from the repository root with ``python -m``:

- :mod:`benchmarks.speed`: speed, as ratios against a baseline measured in the same run (the CI
  gate, throughput, the simulator, numerics, invariance, overlap, scale-out, training, soak, GPU);
- :mod:`benchmarks.checks`: what is not speed (same rows however a sweep runs, the power of the
  regression and comparison gates, quality bars, stuck episodes, the paper's data paths);
- :mod:`benchmarks.tools`: generators of the manual's tables, the model cards and test fixtures.

``python -m benchmarks.speed`` (or ``checks``, ``tools``) lists its entries;
``python -m benchmarks.speed gate --out DIR`` runs one (the same as ``python -m benchmarks.speed.gate``).
Each writes under ``results/`` with the machine and versions.
"""
