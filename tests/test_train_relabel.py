"""Heads follow class names, never list order: re-heading keeps each known class's trained rows (strong and weak
heads, and the BiGRU of the teacher form), gives new classes fresh rows and drops the others."""

from __future__ import annotations

import pytest
import torch

from ptsed.core.errors import ConfigError
from ptsed.models.factory import create_model
from ptsed.models.relabel import reheaded
from ptsed.train.finetune import adapt_heads
from train_fixtures import single_thread, tiny_model

_one_thread = pytest.fixture(autouse=True)(single_thread)


def _outputs(model: torch.nn.Module, waves: torch.Tensor) -> tuple[dict, dict]:
    with torch.no_grad():
        out = model.eval()(waves)
    strong = {name: out.strong_logits[:, i] for i, name in enumerate(model.labels)}
    weak = {name: out.weak_logits[:, i] for i, name in enumerate(model.labels)}
    return strong, weak


def test_teacher_heads_follow_names_with_new_and_dropped_classes():
    model = tiny_model(labels=["a", "b", "c", "d"], rnn_dim=4, rnn_layers=1).eval()
    labels = ["c", "new", "a", "b"]  # d dropped, one new, the rest permuted
    new, change = reheaded(model, labels)
    assert (change.kept, change.new, change.dropped) == (3, 1, 1)
    assert change.line() == "heads: 3 classes kept, 1 new, 1 dropped"
    assert new.labels == labels and new.backbone is model.backbone and new.num_classes == 4
    for k, v in model.head.seq_model.state_dict().items():
        assert torch.equal(v, new.head.seq_model.state_dict()[k]), k
    waves = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    (s_old, w_old), (s_new, w_new) = _outputs(model, waves), _outputs(new, waves)
    for name in ("a", "b", "c"):
        assert torch.equal(s_old[name], s_new[name]) and torch.equal(w_old[name], w_new[name]), name
    assert not any(torch.equal(s_new["new"], s_old[name]) for name in model.labels)  # a fresh row


def test_head_changes_that_alter_the_head_input_give_fresh_rows_and_say_so():
    model = tiny_model(labels=["a", "b"])
    new, change = adapt_heads(model, ["b", "a"], drop_top_layers=1)
    assert new.backbone_layer == -2 and (change.kept, change.new) == (0, 2)
    assert "fresh heads" in change.line()
    _, change = adapt_heads(model, ["b", "a"], rnn_dim=4)
    assert change.kept == 0 and "BiGRU" in change.line()
    with pytest.raises(ConfigError, match="'a'"):
        reheaded(model, ["a", "b", "a"])


def test_create_model_labels_rehead_the_demo_by_name():
    demo = create_model("demo")
    labels = list(reversed(demo.labels[:6])) + ["Dog"]  # a permuted subset and one new class
    model = create_model("demo", labels=labels)
    assert model.labels == labels and model.num_classes == 7
    waves = torch.randn(2, demo.sample_rate, generator=torch.Generator().manual_seed(1))
    (s_old, w_old), (s_new, w_new) = _outputs(demo, waves), _outputs(model, waves)
    for name in labels[:-1]:
        torch.testing.assert_close(s_new[name], s_old[name], rtol=1e-5, atol=1e-5, msg=name)
        torch.testing.assert_close(w_new[name], w_old[name], rtol=1e-5, atol=1e-5, msg=name)


def test_create_model_labels_name_unnamed_heads_in_order(monkeypatch):
    from train_fixtures import register_tiny_arch

    register_tiny_arch(monkeypatch)
    model = create_model("tinysed", pretrained=False, num_classes=2, labels=["x", "y"])
    assert model.labels == ["x", "y"]
    with pytest.raises(ConfigError, match="3 labels given for a head of 2 classes"):
        create_model("tinysed", pretrained=False, num_classes=2, labels=["x", "y", "z"])


def test_create_model_labels_follow_the_vocabulary_of_a_zoo_model(monkeypatch):
    from ptsed.hub.labels import find_labels_file
    from ptsed.models.zoo import STRONG_VOCAB
    from train_fixtures import register_tiny_arch

    if find_labels_file(STRONG_VOCAB) is None:
        pytest.skip("the AudioSet-strong label file (../shared/labels) is not available")
    register_tiny_arch(monkeypatch)  # 447-class heads with the AudioSet-strong vocabulary
    torch.manual_seed(0)
    full = create_model("tinysed", pretrained=False)
    vocab = full.labels
    torch.manual_seed(0)
    model = create_model("tinysed", pretrained=False, labels=[vocab[5], vocab[2], "my class"])
    assert model.labels == [vocab[5], vocab[2], "my class"] and model.vocabulary is None
    assert torch.equal(model.head.strong_head.weight[0], full.head.strong_head.weight[5])
    assert torch.equal(model.head.weak_head.bias[1], full.head.weak_head.bias[2])
