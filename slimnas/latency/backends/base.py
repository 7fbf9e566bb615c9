"""The backend contract: load a workload (ONNX bytes or a torch module), time it, describe the runtime."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Optional

import numpy as np

from ...errors import SlimnasError
from ..timing import Timing, TimingConfig, time_calls


DTYPES = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class BackendConfig:
    """Where and how workloads run."""

    device: str = "cpu"  # cpu | cuda
    threads: int = 1  # intra-op threads (fixed and recorded)
    batch: int = 1
    dtype: str = "fp32"  # fp32 | fp16 | int8 (int8: onnxruntime on the CPU, graphs quantized by slimnas.quantize)

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise SlimnasError(f"device must be cpu or cuda, got {self.device!r}")
        if self.threads < 1:
            raise SlimnasError(f"threads must be at least 1, got {self.threads}")
        if self.batch < 1:
            raise SlimnasError(f"batch must be at least 1, got {self.batch}")
        if self.dtype not in DTYPES:
            raise SlimnasError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")


@dataclass
class Workload:
    """Something to time: its ONNX form and/or a factory of its torch form, plus input and output shapes."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    onnx: Optional[Callable[[], bytes]] = None
    torch: Optional[Callable[[], object]] = None
    # A piece of a network (a latency unit, the probe), not a whole one: quantized, it takes and gives the 8-bit
    # tensors that flow between two INT8 layers rather than float ones (see slimnas.quantize.quantized_io).
    inner: bool = False


class Backend:
    """A runtime that times workloads. Subclasses implement :meth:`loader` and :meth:`version`."""

    name = ""
    model_format = "onnx"  # how it takes a whole network: "onnx" (a graph file) or "torch" (a plain nn.Module)

    def __init__(self, config: BackendConfig):
        self.config = config

    def version(self) -> str:
        raise NotImplementedError

    def device_name(self) -> str:
        from ..fingerprint import cpu_model

        return cpu_model()

    def loader(self, workload: Workload) -> Callable[[int], float]:
        """A function ``call(k)`` that runs the loaded workload k times and returns elapsed milliseconds."""
        raise NotImplementedError

    def session_threads(self) -> ContextManager:
        """A block in which this backend's process-wide thread settings hold (and are undone after); runtimes
        with per-session settings (onnxruntime, TensorRT) need none."""
        return nullcontext()

    def time(self, workload: Workload, timing: TimingConfig) -> Timing:
        with self.session_threads():
            return time_calls(self.loader(workload), timing)

    def describe(self) -> dict:
        return {"backend": self.name, "backend_version": self.version(), "device": self.config.device,
                "device_name": self.device_name(), "threads": self.config.threads, "batch": self.config.batch,
                "dtype": self.config.dtype}


BACKENDS: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    BACKENDS[cls.name] = cls
    return cls


def backend_names() -> list[str]:
    return sorted(BACKENDS)


def create_backend(name: str, config: Optional[BackendConfig] = None) -> Backend:
    """The backend called ``name`` (raises a one-line :class:`SlimnasError` when it cannot run here)."""
    if name not in BACKENDS:
        raise SlimnasError(f"unknown latency backend {name!r}; choose one of {', '.join(backend_names())}")
    return BACKENDS[name](config or BackendConfig())


def random_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
