"""The HEAR API (Turian et al., HEAR 2021) for every ptsed model.

Load it by module name in hear-eval-kit or hear-validator (``ptsed.hear``); the three functions live at
module level. This is the one place in ptsed where times are in MILLISECONDS, as HEAR defines them.

- :func:`load_model` builds a model (a zoo model, an upstream or ptsed checkpoint file) and wraps it.
- :func:`get_timestamp_embeddings`: audio (n_sounds, n_samples) -> embeddings (n_sounds, n_timestamps, D)
  on the models' 40 ms frame grid and the frame centres in ms (n_sounds, n_timestamps).
- :func:`get_scene_embeddings`: audio (n_sounds, n_samples) -> (n_sounds, D), the mean of the timestamp
  embeddings.

Audio longer than the model window (10 s) is cut into overlapping windows (hop ``window_hop_s``, 5 s)
and stitched (each frame from the window whose centre is nearest, as :mod:`ptsed.inference.windows`
does for scores); shorter audio is zero-padded to one window and the frames past its end are dropped.
There is one timestamp per 40 ms frame whose centre lies inside the audio.

Example::

    import torch
    from ptsed import hear

    model = hear.load_model(model_name="atst_frame")            # pretrained as_strong weights
    audio = torch.zeros(2, 16000 * 3)                           # (n_sounds, n_samples) at model.sample_rate
    emb, ts = hear.get_timestamp_embeddings(audio, model)       # (2, 75, D), (2, 75) in ms: 20, 60, ...
    scene = hear.get_scene_embeddings(audio, model)             # (2, D)
"""

from __future__ import annotations

from ptsed.hear.api import (
    HEARModel,
    get_scene_embeddings,
    get_timestamp_embeddings,
    load_model,
    wrap_model,
)

__all__ = ["HEARModel", "get_scene_embeddings", "get_timestamp_embeddings", "load_model", "wrap_model"]
