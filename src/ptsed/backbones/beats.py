"""BEATs (Chen et al., ICML 2023) as a ptsed backbone, loading upstream's released files unchanged.

Pipeline for features (B, 1, F=128, T) from :class:`~ptsed.frontends.kaldi.KaldiFbank`:

1. ``patch_embedding``: 16 x 16 patches (no bias) of the (T, F) image -> (B, 512, T // 16, F // 16),
   flattened time-major, frequency-minor: token ``8 t + f`` is time patch ``t``, frequency patch ``f``
   (496 tokens for 10 s = 62 time patches x 8 frequency patches);
2. ``layer_norm`` (512) and ``post_extract_proj`` (512 -> 768);
3. ``encoder``: convolutional position encoding (grouped Conv1d over tokens, kernel 128, weight norm
   over every dim except the kernel axis, last output dropped, GELU) added to the tokens, LayerNorm,
   then 12 post-norm layers with DeepNorm residual scaling ``alpha = (2 L) ** 0.25``:
   ``x = LN(alpha x + attn(x))``, ``x = LN(alpha x + fc2(gelu(fc1(x))))``;
4. attention with a bucketed relative position bias (one ``relative_attention_bias`` table shared by all
   layers) scaled per query and head by a learned gate (``grep_linear``, ``grep_a``).

Module names equal upstream's, so a released key ``model.model.X`` is ptsed's ``backbone.X``;
:func:`convert_released` adds what a prefix rename cannot (legacy weight-norm spelling, the copies of the
shared bias table).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ptsed.backbones.base import Backbone
from ptsed.core.errors import ConfigError
from ptsed.frontends.kaldi import BEATS_FBANK, KaldiFbank
from ptsed.layers.vit import block_param_groups


@dataclass(frozen=True)
class BEATsConfig:
    """Hyper-parameters of BEATs (defaults: the released BEATs_iter3 base model).

    Attributes:
        depth: number of encoder layers L.
        embed_dim: encoder width D.
        num_heads: attention heads.
        ffn_dim: hidden width of the feed-forward block.
        patch_embed_dim: width of the patch embedding (projected to ``embed_dim`` when different).
        patch_size: square patch edge in feature bins/frames.
        conv_pos: kernel size of the convolutional position encoding (in tokens).
        conv_pos_groups: groups of that convolution.
        num_buckets: relative-position buckets (both directions together).
        max_distance: token distance from which all distances share the outermost bucket.
        deep_norm: DeepNorm residual scaling ``(2 L) ** 0.25`` (``False``: 1).
        dropout: dropout after attention, after the FFN and after the position encoding (training only).
        attention_dropout: dropout on the attention weights.
        activation_dropout: dropout after the FFN activation.
        dropout_input: dropout on the projected patch tokens.
        layerdrop: probability of skipping a whole layer in training.
    """

    depth: int = 12
    embed_dim: int = 768
    num_heads: int = 12
    ffn_dim: int = 3072
    patch_embed_dim: int = 512
    patch_size: int = 16
    conv_pos: int = 128
    conv_pos_groups: int = 16
    num_buckets: int = 320
    max_distance: int = 800
    deep_norm: bool = True
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    dropout_input: float = 0.1
    layerdrop: float = 0.05


# the gate's logits come in two groups of four per head, summed to two gates
_GATE_GROUPS, _GATE_WIDTH = 2, 4


def relative_position_buckets(length: int, num_buckets: int, max_distance: int, device=None) -> torch.Tensor:
    """Bucket index (length, length) of the offset ``key - query``, T5-style and bidirectional.

    Half the buckets serve positive offsets. Inside one half, distances below a quarter of
    ``num_buckets`` get their own bucket; larger ones share log-spaced buckets up to ``max_distance``,
    beyond which all fall into the outermost bucket. The float32 arithmetic matches the reference exactly
    (bucket edges depend on it).
    """
    pos = torch.arange(length, dtype=torch.long, device=device)
    offset = pos[None, :] - pos[:, None]
    half = num_buckets // 2
    exact = half // 2
    dist = offset.abs()
    far = exact + (torch.log(dist.clamp_min(1).float() / exact) / math.log(max_distance / exact) * (half - exact)).to(
        torch.long
    )
    far = far.clamp_max(half - 1)
    return (offset > 0).to(torch.long) * half + torch.where(dist < exact, dist, far)


class GatedRelativeAttention(nn.Module):
    """Multi-head self-attention with a gated relative position bias, on (B, N, D) tokens.

    The logits of head ``h`` are ``q_i . k_j / sqrt(d) + g_hi * P_h(j - i)`` with the shared bias table
    ``P`` (``relative_attention_bias``, one column per head) and a gate computed from the unscaled query:
    ``(a, b) = sigmoid(sum of grep_linear(q_hi) in two groups of 4)``, ``g = a (b grep_a_h - 1) + 2``.
    Runs through :func:`~torch.nn.functional.scaled_dot_product_attention` with the gated bias as mask.
    """

    def __init__(self, dim: int, num_heads: int, num_buckets: int, attention_dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"BEATs embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attention_dropout = attention_dropout
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.grep_linear = nn.Linear(self.head_dim, _GATE_GROUPS * _GATE_WIDTH)
        self.grep_a = nn.Parameter(torch.ones(1, num_heads, 1, 1))
        self.relative_attention_bias = nn.Embedding(num_buckets, num_heads)

    def position_bias(self, buckets: torch.Tensor) -> torch.Tensor:
        """Un-gated bias (1, heads, N, N) for a bucket map (N, N)."""
        return self.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x (B, N, D), un-gated ``bias`` (1, heads, N, N) -> (B, N, D)."""
        b, n, d = x.shape
        h, hd = self.num_heads, self.head_dim
        q = self.q_proj(x).view(b, n, h, hd).transpose(1, 2)  # (B, H, N, hd)
        k = self.k_proj(x).view(b, n, h, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, n, h, hd).transpose(1, 2)
        gates = torch.sigmoid(self.grep_linear(q).view(b, h, n, _GATE_GROUPS, _GATE_WIDTH).sum(-1))
        gate_a, gate_b = gates[..., :1], gates[..., 1:]  # (B, H, N, 1) each
        gate = gate_a * (gate_b * self.grep_a - 1.0) + 2.0
        # the (B, H, N, N) mask is the one large temporary: build it directly in the attention dtype
        mask = gate.to(q.dtype) * bias.to(q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attention_dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class BEATsLayer(nn.Module):
    """Post-norm transformer layer with DeepNorm residual scaling, on (B, N, D) tokens."""

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.self_attn = GatedRelativeAttention(d, cfg.num_heads, cfg.num_buckets, cfg.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.residual_scale = (2.0 * cfg.depth) ** 0.25 if cfg.deep_norm else 1.0
        self.dropout = nn.Dropout(cfg.dropout)
        self.activation_dropout = nn.Dropout(cfg.activation_dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x (B, N, D), un-gated position bias (1, heads, N, N) -> (B, N, D)."""
        x = self.self_attn_layer_norm(x * self.residual_scale + self.dropout(self.self_attn(x, bias)))
        y = self.fc2(self.activation_dropout(F.gelu(self.fc1(x))))
        return self.final_layer_norm(x * self.residual_scale + self.dropout(y))


class _DropLast(nn.Module):
    """Drop the last step of (B, C, N): an even-kernel convolution padded by k/2 yields N + 1 outputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :-1]


class BEATsEncoder(nn.Module):
    """Convolutional position encoding + LayerNorm + the layers; (B, N, D) -> (B, N, D)."""

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        conv = nn.Conv1d(d, d, kernel_size=cfg.conv_pos, padding=cfg.conv_pos // 2, groups=cfg.conv_pos_groups)
        nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 / (cfg.conv_pos * d)))
        nn.init.zeros_(conv.bias)
        trim = [_DropLast()] if cfg.conv_pos % 2 == 0 else []
        self.pos_conv = nn.Sequential(weight_norm(conv, name="weight", dim=2), *trim, nn.GELU())
        self.layer_norm = nn.LayerNorm(d)
        self.layers = nn.ModuleList(BEATsLayer(cfg) for _ in range(cfg.depth))
        shared = self.layers[0].self_attn.relative_attention_bias
        for layer in self.layers[1:]:  # one table for all layers (listed under each in the state dict)
            layer.self_attn.relative_attention_bias = shared
        self.num_buckets = cfg.num_buckets
        self.max_distance = cfg.max_distance
        self.dropout = nn.Dropout(cfg.dropout)
        self.layerdrop = cfg.layerdrop

    def forward(self, x: torch.Tensor, collect: Sequence[int] = (), stop_early: bool = False) -> list[torch.Tensor]:
        """Tokens (B, N, D) -> outputs of the layers in ``collect`` (sorted, 0-based), or ``[final]``.

        With ``stop_early`` the layers above the highest collected one are not run.
        """
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        x = self.dropout(self.layer_norm(x))
        buckets = relative_position_buckets(x.shape[1], self.num_buckets, self.max_distance, device=x.device)
        bias = self.layers[0].self_attn.position_bias(buckets).to(x.dtype)
        want = set(collect)
        last = max(want) if (stop_early and want) else len(self.layers) - 1
        out = []
        for i, layer in enumerate(self.layers[: last + 1]):
            if not (self.training and self.layerdrop > 0 and torch.rand(()).item() < self.layerdrop):
                x = layer(x, bias)
            if i in want:
                out.append(x)
        return out if want else [x]


class BEATs(Backbone):
    """BEATs backbone: features (B, 1, F, T) -> tokens (B, (T // 16) * (F // 16), 768).

    Attributes:
        frame_hop_s: 0.02 s per token (a 160 ms time patch carries F // 16 = 8 frequency tokens).
        max_input_s: 16 s, the span whose token distances (up to ``max_distance`` = 800 tokens) the
            relative bias still tells apart; longer inputs run, but farther tokens share one bucket. The
            convolutional position encoding itself has no length limit.
    """

    def __init__(self, cfg: BEATsConfig | None = None, feature_hop_s: float = 0.01, n_bins: int = 128) -> None:
        super().__init__()
        cfg = cfg or BEATsConfig()
        self.cfg = cfg
        self.embed_dim = cfg.embed_dim
        self.num_layers = cfg.depth
        self.patch_time_s = cfg.patch_size * feature_hop_s
        self.frame_hop_s = self.patch_time_s / max(1, n_bins // cfg.patch_size)
        self.max_input_s = cfg.max_distance * self.frame_hop_s
        self.patch_embedding = nn.Conv2d(
            1, cfg.patch_embed_dim, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False
        )
        self.layer_norm = nn.LayerNorm(cfg.patch_embed_dim)
        if cfg.patch_embed_dim != cfg.embed_dim:
            self.post_extract_proj = nn.Linear(cfg.patch_embed_dim, cfg.embed_dim)
        else:
            self.post_extract_proj = None
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.encoder = BEATsEncoder(cfg)
        self._init_weights()

    def _init_weights(self) -> None:
        """Random init for training from scratch: N(0, 0.02) linears and bias table, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)

    def tokens(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, 1, F, T) -> projected patch tokens (B, N, D) before the encoder."""
        if features.dim() != 4 or features.shape[1] != 1:
            raise ValueError(f"BEATs expects features of shape (B, 1, F, T), got {tuple(features.shape)}")
        p = self.cfg.patch_size
        if features.shape[2] < p or features.shape[3] < p:
            raise ValueError(
                f"BEATs needs at least {p} frequency bins and {p} frames ({p * 10} ms), got features of shape "
                f"{tuple(features.shape)}"
            )
        x = self.patch_embedding(features.transpose(2, 3))  # (B, C, T // p, F // p)
        x = self.layer_norm(x.flatten(2).transpose(1, 2))
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        return self.dropout_input(x)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, 1, F, T) -> (B, N, embed_dim), N = (T // 16) * (F // 16) (496 for 10 s)."""
        return self.encoder(self.tokens(features))[0]

    def forward_intermediates(self, features: torch.Tensor, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Outputs (B, N, D) of the encoder layers in ``indices`` (in the given order); the last layer's
        output equals :meth:`forward`."""
        idx = self.resolve_indices(indices, self.num_layers)
        outs = self.encoder(self.tokens(features), collect=idx, stop_early=True)
        by_layer = dict(zip(sorted(set(idx)), outs, strict=True))
        return [by_layer[i] for i in idx]

    def param_groups(self) -> list[list[str]]:
        """Parameter names per layer, input side first; the patch embedding, its norm and projection, the
        position encoding, the encoder's input norm and the shared bias table join layer 0."""
        return block_param_groups(
            self,
            self.num_layers,
            stem=("patch_embedding.", "layer_norm.", "post_extract_proj.", "encoder.pos_conv.", "encoder.layer_norm."),
            top=(),
            blocks="encoder.layers",
        )


_LEGACY_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}
_REL_BIAS = re.compile(r"^(.*encoder\.layers\.)(\d+)(\.self_attn\.relative_attention_bias\.weight)$")
_LAYER = re.compile(r"^(.*encoder\.layers\.)(\d+)\.")


def convert_released(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Finish the mapping of a prefix-renamed released state dict onto :class:`BEATs`.

    * ``pos_conv.0.weight_g`` / ``weight_v`` (files saved with the old ``torch.nn.utils.weight_norm``)
      become ``pos_conv.0.parametrizations.weight.original0`` / ``original1`` (same tensors).
    * The shared ``relative_attention_bias`` table: like upstream's loader (the last copy in the file
      wins), the last copy found is written under every layer, which also completes files that list it
      only once.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        head, _, leaf = key.rpartition(".")
        if head.endswith("pos_conv.0") and leaf in _LEGACY_WEIGHT_NORM:
            key = f"{head}.{_LEGACY_WEIGHT_NORM[leaf]}"
        out[key] = value
    tables = [(m, k) for k in out if (m := _REL_BIAS.match(k))]
    if tables:
        table = out[tables[-1][1]]
        prefix, suffix = tables[-1][0].group(1), tables[-1][0].group(3)
        layers = {int(m.group(2)) for k in out if (m := _LAYER.match(k)) and m.group(1) == prefix}
        for i in layers:
            out[f"{prefix}{i}{suffix}"] = table
    return out


def build(**kwargs) -> tuple[KaldiFbank, BEATs]:
    """(front-end, backbone) of BEATs. Keyword arguments override :class:`BEATsConfig` fields (e.g.
    ``depth=2`` for a small test model)."""
    names = {f.name for f in fields(BEATsConfig)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise ConfigError(f"unknown BEATs option(s) {unknown}; known: {sorted(names)}")
    frontend = KaldiFbank(BEATS_FBANK)
    backbone = BEATs(BEATsConfig(**kwargs), feature_hop_s=frontend.hop_s, n_bins=frontend.n_bins)
    return frontend, backbone
