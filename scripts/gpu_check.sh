#!/usr/bin/env bash
# The GPU acceptance check (scripts/gpu_check.py): CUDA tests, a random-weight blip2-opt-2.7b compressed on
# the gpu profile with each phase's peak memory beside `plan`'s, prefill/decode timing, the saved model
# reloaded by the stock class, and the two-process DDP/FSDP tests where there are two GPUs. One JSON summary
# (gpu_check.json, or --out FILE). Refuses to run without CUDA. With --install, first installs the project
# and its test tools into the current environment (needs the package index).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--install" ]]; then
    shift
    python -m pip install --quiet -e ".[dev]"
fi
exec python scripts/gpu_check.py "$@"
