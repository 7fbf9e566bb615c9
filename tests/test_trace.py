"""Channel groups found by tracing: the ties each pattern must create, and what must be frozen."""
from __future__ import annotations

import pytest
import torch
import torchvision

import slimnas
from slimnas.trace import analyse, trace
from tests.nets import HardCodedView, NetWithUntraceablePart, TinyNet, UntraceableNet


def groups_of(model, size=32):
    gm, notes = trace(model, torch.randn(1, 3, size, size))
    return analyse(gm, notes)


def group_with(graph, layer, role):
    hits = [g for g in graph.groups if (layer, role) in g.members]
    assert len(hits) == 1, f"{layer}/{role} is in {len(hits)} groups"
    return hits[0]


def test_mobilenet_v2_residual_depthwise_and_fixed_ends():
    graph = groups_of(torchvision.models.mobilenet_v2(num_classes=10))
    # residual add: block 2's projection and block 3's projection share one group
    g = group_with(graph, "features.2.conv.2", "out")
    assert ("features.3.conv.2", "out") in g.members and g.searchable
    # depthwise conv ties its input to its output: the expansion group contains the depthwise conv
    e = group_with(graph, "features.2.conv.0.0", "out")
    assert ("features.2.conv.1.0", "dw") in e.members and ("features.2.conv.2", "in") in e.members
    # image channels and classifier outputs stay fixed
    assert group_with(graph, "classifier.1", "out").frozen == "model output"
    assert group_with(graph, "features.0.0", "in").frozen == "model input"
    # the last conv feeds the classifier through flatten
    assert ("classifier.1", "in") in group_with(graph, "features.18.0", "out").members


def test_squeeze_excitation_ties_gate_to_feature_map():
    graph = groups_of(torchvision.models.mobilenet_v3_large(num_classes=10))
    expand = group_with(graph, "features.4.block.0.0", "out")
    assert ("features.4.block.2.fc2", "out") in expand.members  # the gate's channels
    assert ("features.4.block.2.fc1", "in") in expand.members
    squeeze = group_with(graph, "features.4.block.2.fc1", "out")
    assert squeeze is not expand and squeeze.searchable


def test_test_cnn_concat_grouped_conv_and_flatten():
    graph = groups_of(TinyNet(), size=16)
    # grouped conv: frozen and reported by module name (searchable only with grouped=True: test_trace_grouped.py)
    stem = group_with(graph, "stem.0", "out")
    assert stem.frozen and "grouped" in stem.frozen and "grouped.0" in stem.frozen
    assert any("grouped.0" in n for n in graph.notes)
    # concat: the BN after it and the conv reading it see two groups strung together
    merge = graph.layers["merge_bn"].out_layout
    left, right = group_with(graph, "left.0", "out"), group_with(graph, "right.0", "out")
    assert [s.size for s in merge.segs] == [12, 20]
    assert [graph.groups[s.space].name for s in merge.segs] == [left.name, right.name]
    assert left.searchable and right.searchable
    # flatten of a 2x2 map: fc1 sees each head channel 4 times
    assert graph.layers["fc1"].in_layout.inner == 4
    assert ("fc1", "in") in group_with(graph, "head.0", "out").members


def test_untraceable_submodule_is_frozen_and_named():
    graph = groups_of(NetWithUntraceablePart())
    assert any(n.startswith("gate (DataDependentGate): not traceable") for n in graph.notes)
    assert group_with(graph, "stem.0", "out").frozen  # the gate's input can't be followed
    assert group_with(graph, "body.0", "out").searchable  # the rest still is


def test_untraceable_model_is_an_error_naming_it():
    with pytest.raises(slimnas.SlimnasError, match="cannot trace UntraceableNet.forward"):
        slimnas.convert(UntraceableNet(), 32)


def test_hard_coded_view_freezes_its_channels():
    graph = groups_of(HardCodedView())
    g = group_with(graph, "features.0", "out")
    assert g.frozen and "view to a fixed shape" in g.frozen


def test_model_failing_on_the_input_shape_is_an_error():
    with pytest.raises(slimnas.SlimnasError, match="input of shape"):
        slimnas.convert(TinyNet(), (1, 16, 16))
