"""Typed contracts between the parts of sipd, each defined once and validated when built.

- `jobs`: the params and result of every job type (daemon -> worker -> servicer),
  stored in the job row as JSON with a schema version.
- `job_record`: a job row as the engine hands it to servicers and watches.
- `worker`: the settings the worker process starts with.

The model card lives with the model repository (sipd.modelrepo.card) and the
watch spec with the watches (sipd.watch.spec); both use the same style.
Nothing here imports torch, onnxruntime, GDAL, grpc or generated protos.
"""
