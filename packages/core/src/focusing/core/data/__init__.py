"""The shape data set: records, the cached training set, prepared data sets (`focusing prepare`).

`focusing prepare` turns raw meshes into records on disk, once.

records.py: a shape's record (build_record, the TSDF target) and the settings it depends on;
dataset.py: a folder of meshes (cached) or a prepared set as the training set, and the order
training reads its shapes in (shape_order);
prepared.py: the format (a safetensors file per shape, manifest.jsonl, dataset.json);
prepare.py: the command's pipeline (worker processes, resume, failures, timings);
ray_jobs.py: the same work as Ray tasks (--ray), records still written by the command's process;
streaming.py: records read one at a time, each rank's share of every step's shapes, and the
read-ahead the trainer takes its records from when a set is streamed.
"""
