"""`sipctl bench`: sipd's predictor against a naive torch baseline, on synthetic data.

Lives apart from sipd.training and sipd.inference because it uses both: a
bench model is built with the trainer's exporter, then predicted by sipd's
predictor and by plain torch. Each measurement runs in its own process
(`python -m sipd.bench.throughput ...`), so its memory and CPU time are its own.
"""
