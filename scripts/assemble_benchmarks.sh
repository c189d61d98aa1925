#!/usr/bin/env bash
# Rebuild BENCHMARKS.md from its summary (benchmarks/summary.md) and the per-topic result files.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  cat benchmarks/summary.md
  for topic in sparse render flexicubes fit carve_stats vae compare; do
    f="benchmarks/results/$topic.md"
    [ -f "$f" ] || continue
    echo
    echo "---"
    echo
    sed 's/^#/##/' "$f"  # one heading level down: each file becomes a section
  done
} > BENCHMARKS.md
echo "wrote BENCHMARKS.md"
