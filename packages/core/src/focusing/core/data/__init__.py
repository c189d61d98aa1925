"""Prepared data sets: `focusing prepare` turns raw meshes into records on disk, once.

prepared.py: the format (a safetensors file per shape, manifest.jsonl, dataset.json);
prepare.py: the command's pipeline (worker processes, resume, failures, timings);
streaming.py: records read one at a time, and each rank's share of every step's shapes.
"""
