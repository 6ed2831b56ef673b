"""Running trained networks on your own point cloud files: labels per point, probabilities, top-k classes.

One module per concern:

- :mod:`~image2point.inference.model`: rebuild a network from a training checkpoint or an export
  (:func:`load_model` picks by extension);
- :mod:`~image2point.inference.labels`: the classes a model names, and ground truth mapped to them;
- :mod:`~image2point.inference.prepare`: one cloud prepared as the model's evaluation data was;
- :mod:`~image2point.inference.tiling`: cutting large scenes into overlapping tiles;
- :mod:`~image2point.inference.predict`: running the network on one cloud (:class:`ShapePrediction`,
  :class:`ScenePrediction`);
- :mod:`~image2point.inference.discovery`: which files to predict and their labels files;
- :mod:`~image2point.inference.outputs`: the files written per input, committed together;
- :mod:`~image2point.inference.files`: :func:`predict_files`, all of the above over files;
- :mod:`~image2point.inference.export`: writing a trained network as safetensors plus its config.
"""

from image2point.inference.export import ExportedFiles, export_checkpoint
from image2point.inference.files import FileResult, PredictionRun, predict_files
from image2point.inference.labels import ground_truth, label_classes, label_scheme
from image2point.inference.model import TrainedModel, assemble_model, load_exported, load_model, load_trained
from image2point.inference.predict import (
    DEFAULT_TOP_K,
    Prediction,
    PredictionSettings,
    ScenePrediction,
    ShapePrediction,
    predict_cloud,
    predict_prepared,
)
from image2point.inference.prepare import ModelInput, model_input
from image2point.inference.tiling import DEFAULT_CHUNK_POINTS, DEFAULT_OVERLAP_VOXELS, Tile, plan_tiles, tile_owners

__all__ = [
    "DEFAULT_CHUNK_POINTS",
    "DEFAULT_OVERLAP_VOXELS",
    "DEFAULT_TOP_K",
    "ExportedFiles",
    "FileResult",
    "ModelInput",
    "Prediction",
    "PredictionRun",
    "PredictionSettings",
    "ScenePrediction",
    "ShapePrediction",
    "Tile",
    "TrainedModel",
    "assemble_model",
    "export_checkpoint",
    "ground_truth",
    "label_classes",
    "label_scheme",
    "load_exported",
    "load_model",
    "load_trained",
    "model_input",
    "plan_tiles",
    "predict_cloud",
    "predict_files",
    "predict_prepared",
    "tile_owners",
]
