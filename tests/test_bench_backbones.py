"""benchmarks/bench_backbones.py on two procedural shapes: each timed step trains the network it built, and
the graph-converted backbones are what is timed."""

from pathlib import Path

import pytest
import torch

from image2point.data.procedural import ProceduralShapes

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_backbones.py"


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script(SCRIPT)


@pytest.mark.parametrize("scheme", ["all", "io"])
def test_a_step_changes_exactly_the_trainable_parameters(bench, scheme, monkeypatch):
    samples = [ProceduralShapes(2, "train", 0, 256)[index] for index in range(2)]
    built = {}
    from image2point.train import builders

    original = builders.build_model

    def capture(*args, **kwargs):
        result = original(*args, **kwargs)
        built["network"] = result.network
        return result

    monkeypatch.setattr(builders, "build_model", capture)
    step, (total, trainable) = bench.step_function("mobilenet_v1_x0_25", scheme, samples, "procedural_shapes", 12)
    assert 0 < trainable <= total
    network = built["network"]
    from image2point.models.graph_backbone import GraphBackbone

    assert isinstance(network.backbone, GraphBackbone)
    before = {name: p.detach().clone() for name, p in network.named_parameters()}
    step()
    changed = {name for name, p in network.named_parameters() if not torch.equal(p, before[name])}
    expected = {name for name, p in network.named_parameters() if p.requires_grad}
    assert changed <= expected and "head.classifier.3.bias" in changed
    if scheme == "all":
        assert changed == expected
    else:
        # Frozen: nothing of the backbone moves (its random features are tiny, so may the layers around it).
        assert not any(name.startswith("backbone.") for name in changed | expected)
