#!/usr/bin/env bash
# One short GPU check (under 5 minutes on a machine with an NVIDIA GPU): fp32 actions on CUDA
# against the CPU reference, then env-steps/s for num_envs 64..4096 x env-workers 1..16.
# Writes results/benchmarks/gpu_check.csv and gpu_check.json. Run from the repository root in
# an environment where `pip install -e .` (with a CUDA build of torch) has been done.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
timeout 290 python benchmarks/gpu_check.py "$@"
