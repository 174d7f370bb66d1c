"""Streaming tiled prediction on onnxruntime: one code path for predict, test,
watched folders and benchmarks."""

from sipd.inference.evaluate import evaluate_model
from sipd.inference.model_view import ModelSpec, read_model_spec
from sipd.inference.predictor import SceneRequest, predict_scene, predict_scenes
from sipd.inference.sessions import LoadedModel, SessionCache, load_model
from sipd.inference.writers import write_quicklook

__all__ = [
    "LoadedModel",
    "ModelSpec",
    "SceneRequest",
    "SessionCache",
    "evaluate_model",
    "load_model",
    "predict_scene",
    "predict_scenes",
    "read_model_spec",
    "write_quicklook",
]
