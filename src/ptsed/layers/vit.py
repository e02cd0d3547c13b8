"""Transformer layers shared by the ViT-style backbones (ATST-Frame, fPaSST, ASiT, M2D).

Module names follow timm's vision transformer, so released checkpoints map onto them by a prefix
rename: ``blocks.N.norm1``, ``blocks.N.attn.qkv``, ``blocks.N.attn.proj``, ``blocks.N.norm2``,
``blocks.N.mlp.fc1``, ``blocks.N.mlp.fc2`` (and ``blocks.N.ls1.gamma`` / ``ls2.gamma`` when layer scale
is on). Tokens are (B, N, D) everywhere; attention runs through
:func:`torch.nn.functional.scaled_dot_product_attention`, so fused kernels are used where available.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability ``drop_prob``.

    The kept samples are scaled by ``1 / (1 - drop_prob)``. Identity when not training or ``drop_prob == 0``.
    """
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


class DropPath(nn.Module):
    """Module form of :func:`drop_path` (active only in training mode)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class LayerScale(nn.Module):
    """Learned per-channel scale of a residual branch (parameter ``gamma`` of shape (D,))."""

    def __init__(self, dim: int, init_value: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection and an output projection ``proj``.

    Args:
        dim: token width D (divisible by ``num_heads``).
        num_heads: number of heads.
        qkv_bias: bias on the ``qkv`` projection.
        proj_bias: bias on the output projection.
        attn_drop: dropout on the attention weights (training only).
        proj_drop: dropout after the output projection.
        scale: softmax temperature; ``None`` means ``head_dim ** -0.5``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = scale
        self.attn_drop = float(attn_drop)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, D) -> (B, N, D). ``attn_mask``: boolean (True = attend) or additive, broadcastable to
        (B, heads, N, N)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale
        )
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, d)))


class Mlp(nn.Module):
    """Two-layer perceptron ``fc2(drop(act(fc1(x))))`` applied per token."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        drop: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``.

    Args:
        dim: token width D.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP relative to D.
        qkv_bias: bias on the ``qkv`` projection.
        proj_bias: bias on the attention output projection.
        drop: dropout after the attention projection and inside the MLP.
        attn_drop: dropout on the attention weights.
        drop_path: stochastic-depth probability of both residual branches.
        eps: LayerNorm epsilon.
        init_values: layer-scale initial value (``ls1``/``ls2``); ``None`` disables layer scale.
        act_layer: activation of the MLP.
        norm_layer: normalisation factory ``norm_layer(dim)``; default ``nn.LayerNorm(dim, eps=eps)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        proj_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        eps: float = 1e-6,
        init_values: float | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()

        def norm() -> nn.Module:
            return norm_layer(dim) if norm_layer is not None else nn.LayerNorm(dim, eps=eps)

        self.norm1 = norm()
        self.attn = Attention(
            dim, num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias, attn_drop=attn_drop, proj_drop=drop
        )
        self.ls1 = LayerScale(dim, init_values) if init_values is not None else nn.Identity()
        self.norm2 = norm()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.ls2 = LayerScale(dim, init_values) if init_values is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, D) -> (B, N, D)."""
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x), attn_mask)))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


class PatchEmbed(nn.Module):
    """Non-overlapping (or strided) patches by a conv ``proj``: (B, C, H, W) -> tokens.

    Args:
        patch_size: kernel (kh, kw).
        in_chans: input channels C.
        embed_dim: token width D.
        stride: conv stride; ``None`` means ``patch_size`` (non-overlapping patches).
        bias: bias of the conv.
    """

    def __init__(
        self,
        patch_size: int | Sequence[int],
        in_chans: int = 1,
        embed_dim: int = 768,
        stride: int | Sequence[int] | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        ps = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
        st = ps if stride is None else ((stride, stride) if isinstance(stride, int) else tuple(stride))
        self.patch_size = ps
        self.stride = st
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=ps, stride=st, bias=bias)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Token grid (H', W') for an input of ``height`` x ``width`` (trailing remainders are dropped)."""
        return (
            (height - self.patch_size[0]) // self.stride[0] + 1,
            (width - self.patch_size[1]) // self.stride[1] + 1,
        )

    def forward(self, x: torch.Tensor, flatten: bool = True) -> torch.Tensor:
        """x (B, C, H, W) -> (B, H' * W', D) in row-major order (H' outer), or the grid (B, D, H', W')."""
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2) if flatten else x


def make_blocks(
    depth: int,
    dim: int,
    num_heads: int,
    drop_path_rate: float = 0.0,
    **block_kwargs: object,
) -> nn.ModuleList:
    """``depth`` :class:`Block` s with stochastic depth rising linearly from 0 to ``drop_path_rate``."""
    rates = [drop_path_rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]  # linear ramp
    return nn.ModuleList(Block(dim, num_heads, drop_path=r, **block_kwargs) for r in rates)  # type: ignore[arg-type]


def run_blocks(
    blocks: Iterable[nn.Module],
    x: torch.Tensor,
    collect: Iterable[int] = (),
    attn_mask: torch.Tensor | None = None,
    stop_early: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run ``x`` (B, N, D) through ``blocks``.

    Returns the last tokens computed and the outputs of the blocks whose (0-based) indices are in
    ``collect``, in block order. With ``stop_early`` the blocks after the highest collected index are
    skipped (the returned tokens are then that block's output).
    """
    want = set(collect)
    last = max(want) if (stop_early and want) else None
    out: list[torch.Tensor] = []
    for i, blk in enumerate(blocks):
        x = blk(x, attn_mask) if attn_mask is not None else blk(x)
        if i in want:
            out.append(x)
        if last is not None and i >= last:
            break
    return x, out


def block_param_groups(
    module: nn.Module,
    num_blocks: int,
    stem: Sequence[str],
    top: Sequence[str],
    blocks: str = "blocks",
) -> list[list[str]]:
    """Parameter names of a ViT grouped by depth for layer-wise learning-rate decay.

    Group ``i`` holds ``{blocks}.i.*``; the input-side parameters (names starting with one of ``stem``)
    join group 0 and the output-side ones (``top``, e.g. the final norm) join the last group, as upstream's
    ``separate_params`` does. Raises ``ValueError`` for a parameter that fits nowhere.
    """
    groups: list[list[str]] = [[] for _ in range(num_blocks)]
    prefix = blocks + "."
    for name, _ in module.named_parameters():
        if name.startswith(prefix):
            groups[int(name[len(prefix) :].split(".", 1)[0])].append(name)
        elif name.startswith(tuple(stem)):
            groups[0].append(name)
        elif name.startswith(tuple(top)):
            groups[-1].append(name)
        else:
            raise ValueError(f"parameter {name!r} belongs to no layer group")
    return groups
