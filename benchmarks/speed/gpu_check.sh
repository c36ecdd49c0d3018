#!/usr/bin/env bash
# One short GPU check (under 5 minutes on a machine with an NVIDIA GPU): fp32 actions on CUDA
# against the CPU reference, then env-steps/s for num_envs 64..4096 x env-workers 1..16.
# Writes results/benchmarks/gpu_check.csv and gpu_check.json. Run from the repository root in
# an environment where `pip install -e .` (with a CUDA build of torch) has been done.
set -euo pipefail
cd "$(dirname "$0")/.."
# GPU determinism: cuBLAS picks its workspace per stream unless told, which can change
# a GEMM's reduction order between runs; a fixed config plus torch's deterministic algorithms
# (set in gpu_check.py) is what the check's "gpu_determinism" block measures. Pinned numerics
# (harness/core/numerics.py) are a CPU guarantee: CUDA results are not bit-equal to the CPU's.
export CUBLAS_WORKSPACE_CONFIG="${CUBLAS_WORKSPACE_CONFIG:-:4096:8}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
timeout 290 python -m benchmarks.speed.gpu_check "$@"
# The batched MuJoCo stepper alone (CPU side of a GPU machine): threads 1..16, slots up to 4096;
# each run writes results/benchmarks/simulator_<slots>_<threads>.csv.
for slots in 256 1024 4096; do
  for threads in 1 4 16; do
    timeout 120 python -m benchmarks.speed.simulator --slots "$slots" --threads "$threads" --steps 50 --rounds 1 \
      --out "results/benchmarks/gpu_machine/simulator_${slots}_${threads}" || true
  done
done
