"""The headline benchmark: slimnas against its peers at equal MEASURED latency (CIFAR-10, MobileNetV2).

``benchmarks/headline.py`` is the command; this package holds its parts: profiles, measurement relative to
the base, search of a knob by measurement, the methods (a registry), the common fine-tune, the run with its
on-disk cache, and the report.
"""
