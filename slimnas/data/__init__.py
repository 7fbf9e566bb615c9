"""Data sets for supernet training, evaluation and ranking.

``load_data(DataConfig(source=...))`` returns train / validation / test sets plus the class names and the
normalisation. Sources (a registry, see :mod:`slimnas.data.sources`): ``digits`` (scikit-learn's handwritten
digits, shipped inside that package, upsampled to RGB in memory: the default that needs no download),
``cifar10`` (the JPEG tarball in ``../shared/data`` or any ImageFolder copy), ``torchvision-cifar10:ROOT``
(torchvision's own loader, for real users), or the path of an ImageFolder tree (``ROOT/train/<class>/*.jpg``
and optionally ``ROOT/val`` or ``ROOT/test``). The validation split is always carved from the training
images with a fixed seed: the test split is for reporting only.
"""
from .core import DataConfig, Datasets, make_loader
from .sources import SOURCES, load_data, source

__all__ = ["DataConfig", "Datasets", "SOURCES", "load_data", "make_loader", "source"]
