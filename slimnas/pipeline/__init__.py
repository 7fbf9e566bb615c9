"""The user's main job, end to end: ``slim`` a model to a budget on a device; ``demo`` on an embedded default;
``search`` a trained supernet run; ``export`` a result to model.pt / ONNX / TensorRT.

Each is the library side of the command-line verb of the same name; configs are frozen dataclasses
(:mod:`.config`) read from YAML with every key checked (:mod:`.schema`).
"""
from .config import (ExportConfig, FinetuneConfig, FitnessConfig, LatencyConfig, ModelConfig, SlimConfig, SupernetConfig,
                     TargetConfig, VerifyConfig, dump_config, load_config)
from .demo import demo, demo_config
from .exports import export
from .prepare import prepare
from .searching import SearchJob, search
from .slim import slim

__all__ = ["ExportConfig", "FinetuneConfig", "FitnessConfig", "LatencyConfig", "ModelConfig", "SearchJob", "SlimConfig",
           "SupernetConfig", "TargetConfig", "VerifyConfig", "demo", "demo_config", "dump_config", "export", "load_config", "prepare",
           "search", "slim"]
