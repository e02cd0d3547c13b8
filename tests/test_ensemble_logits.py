"""``ptsed ensemble-logits``: mean frame LOGITS of N models in upstream's HDF5 layout, streamed and resumable."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conformance import LABELS
from ptsed.cli.main import main
from ptsed.core.errors import ConfigError
from ptsed.recipes.ensemble import LogitsFile, LogitsWriter
from recipe_data import EVAL_IDS, TINY_ARCH, TINY_BUILDER, make_audioset


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PTSED_LABELS_DIR", str(LABELS))
        return make_audioset(tmp_path_factory.mktemp("audioset"))


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two tiny 447-class models (a teacher with a BiGRU and a student) as ptsed checkpoints."""
    from ptsed.models.factory import create_model, save_checkpoint

    root = tmp_path_factory.mktemp("members")
    out = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PTSED_LABELS_DIR", str(LABELS))
        for i, head in enumerate(("teacher", "student")):
            torch.manual_seed(10 + i)
            model = create_model(f"{TINY_ARCH}.as_weak", pretrained=False, head=head, num_classes=447, rnn_dim=8,
                                 **TINY_BUILDER)  # fmt: skip
            out.append(save_checkpoint(model, root / f"m{i}.pt"))
    return out


def test_writer_grows_in_batches_and_repairs_an_interrupted_write(tmp_path: Path) -> None:
    path = tmp_path / "x.h5"
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 5, 7)).astype(np.float32)
    with LogitsWriter(path, 5, 7, attrs={"models": ["m"]}) as w:
        w.append(["Ya", "Yb"], a)
        w.append(["Yc"], a[:1])
        assert len(w) == 3
    with h5py.File(path, "r+") as f:
        assert f["strong_logits"].maxshape == (None, 5, 7) and f["strong_logits"].chunks == (1, 5, 7)
        # a write cut short: logits of one more clip, its name never written
        f["strong_logits"].resize((4, 5, 7))
        f["filenames"].resize((4,))
    with LogitsWriter(path, 5, 7, attrs={"models": ["m"]}) as w:
        assert w.done == {"Ya", "Yb", "Yc"} and len(w) == 3
    with pytest.raises(ConfigError, match="other models"):
        LogitsWriter(path, 5, 7, attrs={"models": ["n"]})
    with pytest.raises(ConfigError, match="shape"):
        LogitsWriter(path, 6, 7, attrs={})
    f = LogitsFile(path)
    assert f.names() == ["Ya", "Yb", "Yc"] and f.upstream_lookup  # no ptsed_version attribute: like Zenodo's
    np.testing.assert_array_equal(f.logits("Yb"), a[1].astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(f.probabilities("Ya"), 1 / (1 + np.exp(-f.logits("Ya"))), rtol=1e-6)


def test_cli_writes_mean_logits_and_resumes(data: dict[str, Path], members: list[Path], tmp_path: Path) -> None:
    from ptsed.data.audioset import AudioSetHDF5, fit_length
    from ptsed.models.factory import create_model

    out = tmp_path / "logits.h5"
    argv = ["ensemble-logits", "--model", TINY_ARCH, "--checkpoint", str(members[0]), "--model", TINY_ARCH,
            "--checkpoint", str(members[1]), "--hdf5", str(data["eval_audio"]), "--output", str(out),
            "--quiet", "--num-workers", "0", "--batch-size", "3"]  # fmt: skip
    assert main(argv) == 0
    with h5py.File(out) as f:
        assert f["strong_logits"].shape == (len(EVAL_IDS), 447, 250) and f["strong_logits"].dtype == np.float16
        names = [n.decode("UTF-8") for n in f["filenames"]]  # upstream reads them like this
        stored = f["strong_logits"][:].astype(np.float32)
        assert h5py.check_string_dtype(f["filenames"].dtype).encoding == "utf-8"
    assert names == [f"Y{i}" for i in EVAL_IDS]
    models = [create_model("x", checkpoint_path=p) for p in members]
    with AudioSetHDF5(data["eval_audio"]) as audio:
        wave = torch.from_numpy(np.stack([fit_length(audio.load(n, 16000), 160000) for n in names]))
    with torch.no_grad():
        each = [m(wave).strong_logits.numpy() for m in models]
    mean_logits = (each[0] + each[1]) / 2
    np.testing.assert_allclose(stored, mean_logits, atol=4e-3, rtol=2e-3)
    # the mean of logits, not the logit of the mean probability
    probs = (1 / (1 + np.exp(-each[0])) + 1 / (1 + np.exp(-each[1]))) / 2
    assert np.abs(np.log(probs / (1 - probs)) - mean_logits).max() > 1e-2
    # a second run continues the file: nothing to do; --overwrite starts it anew
    assert main(argv) == 0
    assert LogitsFile(out).names() == names and not LogitsFile(out).upstream_lookup
    with h5py.File(out, "r+") as f:  # drop the last two clips, as if the first run had been killed
        f["filenames"].resize((2,))
        f["strong_logits"].resize((2, 447, 250))
    assert main(argv) == 0
    with h5py.File(out) as f:
        assert sorted(n.decode() for n in f["filenames"]) == sorted(names)
        again = {n.decode(): f["strong_logits"][i].astype(np.float32) for i, n in enumerate(f["filenames"])}
    np.testing.assert_allclose(again[names[3]], stored[3], atol=2e-3)


def test_cli_checks_the_pairing_of_models_and_checkpoints(
    data: dict[str, Path], members: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["ensemble-logits", "--model", TINY_ARCH, "--model", TINY_ARCH, "--checkpoint", str(members[0]),
            "--audio", str(data["train_audio"]), "--output", str(tmp_path / "x.h5")]  # fmt: skip
    assert main(argv) == 2
    assert "one checkpoint per model" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    argv = ["ensemble-logits", "--model", TINY_ARCH, "--checkpoint", str(members[0]), "--audio",
            str(tmp_path / "empty"), "--output", str(tmp_path / "x.h5")]  # fmt: skip
    assert main(argv) == 2
    assert "holds no" in capsys.readouterr().err  # a clear message naming the folder
