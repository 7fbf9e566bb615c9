"""Tracing a model and finding its channel groups."""
from .groups import ChannelGraph, ChannelGroup, LayerSpec, ModuleCall, analyse
from .layout import Layout, Seg
from .tracer import trace

__all__ = ["ChannelGraph", "ChannelGroup", "LayerSpec", "Layout", "ModuleCall", "Seg", "analyse", "trace"]
