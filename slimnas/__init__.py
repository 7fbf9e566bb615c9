"""slimnas: slim a trained CNN to a latency budget on a specific device.

The core verbs: ``load_model`` → ``convert`` (a width-searchable supernet found by tracing) → pick a
``Subnet`` → ``export_subnet`` (a plain model of the original class) → ``export_onnx``/``save_exported``.
"""
from .errors import SlimnasError
from .export import export_onnx, export_subnet, load_exported, save_exported
from .models import build_model, load_model
from .search import Constraint, SearchConfig, SearchResult, evolve, parse_constraint, parse_constraints
from .space import SearchSpace, SpaceConfig
from .subnet import Subnet
from .supernet import ConvertConfig, Supernet, convert

__version__ = "0.1.0"

__all__ = [
    "Constraint", "ConvertConfig", "SearchConfig", "SearchResult", "SearchSpace", "SlimnasError", "SpaceConfig",
    "Subnet", "Supernet", "build_model", "convert", "evolve", "export_onnx", "export_subnet", "load_exported",
    "load_model", "parse_constraint", "parse_constraints", "save_exported",
]
