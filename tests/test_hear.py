"""The HEAR API against the contract that hear-validator checks, on a tiny model (and every zoo arch, slow).

hear-validator (hearbenchmark/hear-validator) loads the module by name, calls ``load_model`` and checks:
``sample_rate`` in (16000, 22050, 44100, 48000); int ``scene_embedding_size`` / ``timestamp_embedding_size``;
for 2 sounds of 1.07 s, 1.98 s and 4.0 s: embeddings (n, T, D) float32, timestamps (n, T), D as declared,
timestamp steps within 1 ms of their mean, the first no later than one step, the last no earlier than
``1000 * length - 2 * step`` and no later than ``1000 * length``; scene embeddings (4, D) float32 for 2.74 s.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

import ptsed
from hub_testing import build_tiny, register_tiny, tiny_released_state
from ptsed.core.errors import ConfigError
from ptsed.heads.sed_head import HeadConfig
from ptsed.hear import HEARModel, get_scene_embeddings, get_timestamp_embeddings, load_model, wrap_model
from ptsed.models.factory import save_checkpoint
from ptsed.models.sed_model import SEDModel
from ptsed.models.zoo import ARCHS

SR = 16000


def tiny_model(seed: int = 0) -> SEDModel:
    """Tiny front-end and backbone (hub_testing) with a BiGRU head, so embeddings depend on their context."""
    torch.manual_seed(seed)
    frontend, backbone = build_tiny(embed_dim=6)
    return SEDModel(frontend, backbone, HeadConfig(n_strong=3, rnn_dim=4, rnn_layers=1), labels=["a", "b", "c"]).eval()


def check_contract(module, model) -> None:  # noqa: ANN001
    """hear-validator's checks (see the module docstring)."""
    assert isinstance(model, torch.nn.Module)
    assert model.sample_rate in (16000, 22050, 44100, 48000)
    assert isinstance(model.scene_embedding_size, int) and isinstance(model.timestamp_embedding_size, int)
    g = torch.Generator().manual_seed(0)
    for length in (1.07, 1.98, 4.0):
        audio = torch.rand((2, int(length * model.sample_rate)), generator=g) * 2 - 1
        emb, ts = module.get_timestamp_embeddings(audio, model)
        assert emb.dtype == torch.float32 and emb.ndim == 3 and ts.ndim == 2
        assert emb.shape[0] == 2 and emb.shape[:2] == ts.shape and emb.shape[2] == model.timestamp_embedding_size
        ts = ts.detach().cpu().numpy()
        diff = np.diff(ts)
        step = diff.mean()
        assert np.abs(diff - step).max() <= 1.0 and step <= 50.0
        assert ts.min() <= step
        assert 1000 * length - 2 * step <= ts.max() <= 1000 * length
        assert torch.isfinite(emb).all()
    audio = torch.rand((4, int(2.74 * model.sample_rate)), generator=g) * 2 - 1
    scene = module.get_scene_embeddings(audio, model)
    assert scene.dtype == torch.float32 and scene.shape == (4, model.scene_embedding_size)


def test_module_level_api_passes_the_validator_contract() -> None:
    module = importlib.import_module("ptsed.hear")
    for name in ("load_model", "get_scene_embeddings", "get_timestamp_embeddings"):
        assert callable(getattr(module, name))
    check_contract(module, wrap_model(tiny_model()))


def test_timestamps_in_ms_on_the_40ms_grid() -> None:
    model = wrap_model(tiny_model())
    emb, ts = get_timestamp_embeddings(torch.zeros(1, 3 * SR), model)
    assert ts.shape == (1, 75) and ts[0, :3].tolist() == pytest.approx([20.0, 60.0, 100.0])
    assert ts[0, -1].item() == pytest.approx(2980.0)
    assert model.timestamps_ms(int(1.07 * SR)).shape == (27,)  # frame centres inside 1.07 s: 20 .. 1060 ms
    assert model.timestamps_ms(1).shape == (1,)


def test_short_audio_is_padded_to_a_window_and_trimmed() -> None:
    sed = tiny_model()
    model = wrap_model(sed)
    audio = 0.1 * torch.randn(2, 3 * SR, generator=torch.Generator().manual_seed(1))
    emb, _ = get_timestamp_embeddings(audio, model)
    with torch.no_grad():
        direct = sed.embed(torch.nn.functional.pad(audio, (0, 7 * SR)))
    assert emb.shape == (2, 75, 8)
    assert torch.allclose(emb, direct[:, :75], atol=1e-6)
    assert torch.allclose(get_scene_embeddings(audio, model), emb.mean(1), atol=1e-6)


def test_long_audio_is_windowed_and_stitched_at_window_centres() -> None:
    sed = tiny_model()
    model = wrap_model(sed)  # 10 s windows every 5 s: starts 0, 5, 10, 15 s for 25 s
    audio = 0.1 * torch.randn(1, 25 * SR, generator=torch.Generator().manual_seed(2))
    emb, ts = get_timestamp_embeddings(audio, model)
    assert emb.shape == (1, 625, 8) and ts[0, -1].item() == pytest.approx(24980.0)
    with torch.no_grad():
        first = sed.embed(audio[:, : 10 * SR])
        second = sed.embed(audio[:, 5 * SR : 15 * SR])
        last = sed.embed(audio[:, 15 * SR :])
    split = (0 + 125 + 250) // 2  # frames nearer the first window's centre come from it
    assert torch.allclose(emb[:, :split], first[:, :split], atol=1e-6)
    assert torch.allclose(emb[:, split : split + 50], second[:, split - 125 : split - 75], atol=1e-6)
    assert torch.allclose(emb[:, -100:], last[:, -100:], atol=1e-6)
    assert not torch.allclose(first[:, 125:], second[:, :125], atol=1e-4)  # overlapping windows differ (edges)
    mean = wrap_model(sed, stitch="mean", window_hop_s=2.5)
    assert get_timestamp_embeddings(audio, mean)[0].shape == (1, 625, 8)


def test_batch_consistency_and_device_of_outputs() -> None:
    model = wrap_model(tiny_model(), batch_size=3)
    audio = 0.1 * torch.randn(3, 12 * SR, generator=torch.Generator().manual_seed(3))
    together, _ = get_timestamp_embeddings(audio, model)
    alone = torch.cat([get_timestamp_embeddings(audio[i : i + 1], model)[0] for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)
    numpy_in, _ = get_timestamp_embeddings(audio.numpy().astype(np.float64), model)
    assert torch.allclose(numpy_in, together, atol=1e-5)


def test_layer_selection() -> None:
    sed = tiny_model()
    top, layer0 = wrap_model(sed), wrap_model(sed, layer=0)
    assert top.timestamp_embedding_size == 8 and layer0.timestamp_embedding_size == 6
    assert get_timestamp_embeddings(torch.zeros(1, SR), layer0)[0].shape == (1, 25, 6)
    with pytest.raises(ConfigError, match="layer 1 is out of range"):
        wrap_model(sed, layer=1)
    with pytest.raises(ValueError, match="n_sounds, n_samples"):
        get_timestamp_embeddings(torch.zeros(SR), top)


def test_load_model_from_a_ptsed_checkpoint(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    register_tiny(monkeypatch)
    sed = ptsed.create_model("tiny", pretrained=False, head="teacher", rnn_dim=4, embed_dim=6)
    path = save_checkpoint(sed, tmp_path / "tiny.pt")
    model = load_model(str(path), layer=-1, window_hop_s=4.0)  # a ptsed checkpoint names its architecture
    assert isinstance(model, HEARModel) and model.layer == -1 and model.window_hop_s == pytest.approx(4.0)
    check_contract(importlib.import_module("ptsed.hear"), model)


REDUCED = {"beats": {"depth": 1}, "atst_frame": {"depth": 1}, "fpasst": {"depth": 1}, "asit": {"depth": 1},
           "m2d": {"depth": 1}, "frame_mn06": {}, "frame_mn10": {"width_mult": 0.1}}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("arch", [a for a in ARCHS if ARCHS[a].implemented])
def test_every_zoo_arch(arch: str, tmp_path) -> None:  # noqa: ANN001
    sed = ptsed.create_model(arch, pretrained=False, **REDUCED.get(arch, {}))
    path = save_checkpoint(sed, tmp_path / f"{arch}.pt")
    model = load_model(str(path), model_name=arch)
    check_contract(importlib.import_module("ptsed.hear"), model)
    assert wrap_model(sed, layer=0).timestamp_embedding_size > 0


def test_a_released_file_under_any_name_passes_the_validator_contract(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """hear-validator passes only the file: ``load_model(path)``; the keys say the model (tiny registered arch)."""
    register_tiny(monkeypatch)
    path = tmp_path / "my_model.pt"
    torch.save(tiny_released_state("as_strong", teacher=True), path)
    module = importlib.import_module("ptsed.hear")
    model = module.load_model(str(path))
    assert model.model.name == "tiny.as_strong" and model.model.head_config.is_teacher
    check_contract(module, model)


@pytest.mark.slow  # full-size forward passes: 7 to 30 s per architecture on 2 shared cores
@pytest.mark.parametrize("arch", [a for a in ARCHS if ARCHS[a].implemented])
def test_released_files_under_any_name_pass_the_validator_calls(arch: str, tmp_path) -> None:  # noqa: ANN001
    """hear-validator's way: ``load_model(path)`` with only the file (here named my_model.pt, a released
    layout of full size with one broadcast value per tensor), then both embedding functions on a small batch."""
    from conformance import require_shared
    from test_layouts import released_layout

    require_shared()
    path = tmp_path / "my_model.pt"
    state = released_layout(arch, "as_strong")  # constants: a BatchNorm variance must not be negative
    torch.save({k: v.abs() + 0.5 if k.endswith("running_var") else v for k, v in state.items()}, path)
    module = importlib.import_module("ptsed.hear")
    model = module.load_model(str(path))
    assert model.model.arch == arch and isinstance(model, torch.nn.Module)
    assert model.sample_rate in (16000, 22050, 44100, 48000)
    assert isinstance(model.scene_embedding_size, int) and isinstance(model.timestamp_embedding_size, int)
    audio = torch.rand((2, int(1.07 * model.sample_rate)), generator=torch.Generator().manual_seed(0)) * 2 - 1
    emb, ts = module.get_timestamp_embeddings(audio, model)
    assert emb.dtype == torch.float32 and emb.shape == (2, 27, model.timestamp_embedding_size)
    assert ts.shape == (2, 27) and ts[0, 0].item() == pytest.approx(20.0) and ts.max().item() <= 1070.0
    assert torch.isfinite(emb).all()
    scene = module.get_scene_embeddings(audio, model)
    assert scene.dtype == torch.float32 and scene.shape == (2, model.scene_embedding_size)
    assert torch.allclose(scene, emb.mean(1), atol=1e-5)
