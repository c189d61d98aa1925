"""Prepared data sets: `focusing prepare` turns raw meshes into records on disk, once.

prepared.py: the format (a safetensors file per shape, manifest.jsonl, dataset.json);
prepare.py: the command's pipeline (worker processes, resume, failures, timings);
ray_jobs.py: the same work as Ray tasks (--ray), records still written by the command's process;
streaming.py: records read one at a time, each rank's share of every step's shapes, and the
read-ahead the trainer takes its records from when a set is streamed.
"""
