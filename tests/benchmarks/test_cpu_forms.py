"""The cpu_forms study's own variants (benchmarks/studies/cpu_forms.py): NNCF on the whole
graph, the all-INT8 ceiling the README compares edgeft's OpenVINO INT8 with. Real NNCF on
the tiny bundle; the claim checked is the one the README makes of it: nothing in float."""

from __future__ import annotations

import pytest

from tests.bench_support import tiny_bench_bundle
from tests.conftest import copy_bundle

pytest.importorskip("openvino", reason="openvino is not installed (pip install openvino)")
pytest.importorskip("nncf", reason="nncf is not installed (pip install nncf)")


def test_the_whole_graph_variant_quantizes_every_convolution(tmp_path_factory):
    import openvino as ov

    from benchmarks.studies.cpu_forms import WHOLE_GRAPH_IR, nncf_variant_ir

    b = copy_bundle(tiny_bench_bundle(tmp_path_factory), tmp_path_factory.mktemp("cf") / "b")
    assert nncf_variant_ir(b, WHOLE_GRAPH_IR, 0) > 0
    model = ov.Core().read_model(str(b / WHOLE_GRAPH_IR))
    convs = [
        op
        for op in model.get_ordered_ops()
        if op.get_type_name() in ("Convolution", "GroupConvolution")
    ]
    feeds = [c.input_value(0).get_node().get_type_name() for c in convs]
    assert len(convs) == 52 and feeds == ["FakeQuantize"] * 52  # the stem included
    assert model.input(0).get_partial_shape()[0].is_dynamic
