"""Input encodings for the atlas fields, in plain PyTorch.

* ``HashGrid``: the multi-resolution hash encoding of Instant-NGP as used by
  Hashing-NVD / CoDeF: ``levels`` grids from ``base`` to ``base·scale^(L-1)``
  cells per side, ``features`` numbers per vertex, a table of ``2^log2_table``
  rows per level (levels small enough to fit are stored densely, the others
  are hashed). Values are bilinear (2D) or trilinear (3D) interpolations of the
  vertex features, so the encoding is continuous and exact at grid vertices.
  ``forward`` works level by level (dense levels: one fused trilinear /
  bilinear ``F.grid_sample`` on the level's vertex volume; hashed levels: the
  corner rows built as outer XORs of per-axis hashes, one ``index_select``);
  ``forward_reference`` is the direct all-levels, all-corners gather it
  replaces (same values to float rounding; kept for the exactness test and
  the bench).
* ``PositionalEncoding``: NLA's Fourier features ``[x, sin(2^k π x), cos(2^k π x)]``.

Inputs are coordinates in [-1, 1].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Instant-NGP's hashing primes (the first is 1 so that 1-D hashing is the identity).
_PRIMES = (1, 2654435761, 805459861)


def grid_resolutions(levels: int, base: int, scale: float) -> list[int]:
    """Cells per side of every level: ``floor(base · scale^l)``.

    >>> grid_resolutions(4, 16, 1.5)
    [16, 24, 36, 54]
    """
    return [int(math.floor(base * scale ** level)) for level in range(levels)]


class HashGrid(nn.Module):
    """Multi-resolution hash-grid encoding of ``dim``-D points (dim 2 or 3).

    forward: ``(B, dim)`` in [-1, 1] → ``(B, levels · features)``.
    """

    def __init__(self, dim: int, levels: int = 16, features: int = 2, log2_table: int = 15,
                 base: int = 16, scale: float = 1.38, init_range: float = 1e-4):
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"HashGrid dim must be 2 or 3, got {dim}")
        self.dim, self.levels, self.features = dim, levels, features
        table = 2 ** log2_table
        res = grid_resolutions(levels, base, scale)
        # A level is stored densely when its (r+1)^dim vertices fit the table,
        # else it is hashed into exactly 2^log2_table rows.
        sizes = [min(table, (r + 1) ** dim) for r in res]
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + s)
        self.register_buffer("res", torch.tensor(res, dtype=torch.float32), persistent=False)
        self.register_buffer("sizes", torch.tensor(sizes, dtype=torch.int64), persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets[:-1], dtype=torch.int64), persistent=False)
        self.register_buffer("dense", torch.tensor([(r + 1) ** dim <= table for r in res]),
                             persistent=False)
        # Corner offsets of a cell: (2^dim, dim) of 0/1.
        corners = torch.tensor([[(c >> k) & 1 for k in range(dim)] for c in range(2 ** dim)])
        self.register_buffer("corners", corners, persistent=False)
        self.table = nn.Parameter(torch.empty(offsets[-1], features).uniform_(-init_range, init_range))
        # Plain-number plan for the level-by-level forward: (offset, size, res, dense).
        self._plan = [(offsets[k], sizes[k], res[k], (res[k] + 1) ** dim <= table) for k in range(levels)]

    @property
    def out_dim(self) -> int:
        return self.levels * self.features

    def vertex_index(self, vertex: torch.Tensor) -> torch.Tensor:
        """Row of the table for integer vertices ``(L, ..., dim)`` → ``(L, ...)``.

        Dense levels use row-major indexing, hashed levels XOR the coordinates
        times large primes (Instant-NGP); both are taken modulo the level size.
        """
        shape = (-1,) + (1,) * (vertex.ndim - 2)
        side = (self.res.long() + 1).view(shape)
        dense = torch.zeros_like(vertex[..., 0])
        hashed = torch.zeros_like(vertex[..., 0])
        stride = torch.ones_like(side)
        for k in range(self.dim):
            dense = dense + vertex[..., k] * stride
            stride = stride * side
            hashed = hashed ^ (vertex[..., k] * _PRIMES[k])
        # Dense rows are < size already; hashed levels have a power-of-two size,
        # so a mask replaces the (slow) integer modulo.
        row = torch.where(self.dense.view(shape), dense, hashed & (self.sizes.view(shape) - 1))
        return row + self.offsets.view(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, dim)`` → ``(B, levels · features)``, level by level.

        Both paths hold points just outside [-1, 1] (flow targets near the
        border) on the grid's edge rather than wrapping them through the hash.
        """
        p = ((x + 1) * 0.5).clamp(0, 1)
        # Points along the last axis throughout: broadcasts over leading axes vectorise.
        pt = p.T.contiguous()                                    # (dim, B)
        outs = []
        # One split (not a slice per level): its backward assembles the table's
        # gradient once instead of a full-size zero tensor per level.
        levels = self.table.split([size for _, size, _, _ in self._plan])
        for level, (_, size, res, dense) in zip(levels, self._plan):
            if dense:
                outs.append(self._dense_level(level, res, p * 2 - 1))
            else:
                outs.append(self._hashed_level(level, size, res, pt))
        out = torch.stack(outs)                                  # (L, F, B)
        return out.permute(2, 0, 1).reshape(x.shape[0], -1)

    def _dense_level(self, level: torch.Tensor, res: int, g: torch.Tensor) -> torch.Tensor:
        """A dense level's rows are its ``(res+1)^dim`` vertices in row-major
        order (x fastest), i.e. a ``(F, [z,] y, x)`` volume; with
        align_corners=True, −1 and 1 are its first and last vertex, so one
        fused grid_sample does the gather and the (bi/tri)linear weights.
        ``level (rows, F)``, ``g (B, dim)`` in [-1, 1] → ``(F, B)``."""
        side = res + 1
        volume = level.view(*([side] * self.dim), self.features).movedim(-1, 0)[None]
        grid = g.view((1,) * self.dim + (-1, self.dim))
        out = F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return out.reshape(self.features, -1)

    def _hashed_level(self, level: torch.Tensor, size: int, res: int, pt: torch.Tensor) -> torch.Tensor:
        """Rows of the 2^dim cell corners as outer XORs of per-axis hashes
        (each axis has only two values per point), masked to the level's
        power-of-two size; ``pt (dim, B)`` in [0, 1] → ``(F, B)``."""
        pos = pt * res
        cell = pos.floor().long().clamp_max(res - 1)     # the last cell includes the far edge
        frac = pos - cell
        two = torch.arange(2, device=pt.device)[:, None]
        rows = weight = None
        for k in range(self.dim):   # corner c has bit k = axis k's upper vertex, as ``corners``
            # Only the low bits survive the mask, so the prime may be reduced first.
            h = ((cell[k] + two) * (_PRIMES[k] % size)) & (size - 1)            # (2, B)
            w = torch.stack([1 - frac[k], frac[k]])
            if rows is None:
                rows, weight = h, w
            else:   # axis k is the more significant bit: (2, corners so far, B)
                rows = (h[:, None] ^ rows[None]).flatten(0, 1)
                weight = (w[:, None] * weight[None]).flatten(0, 1)
        feats = level.T.index_select(1, rows.reshape(-1)).view(self.features, *rows.shape)
        return (feats * weight).sum(1)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The direct form of ``forward``: every level and corner at once
        (``(L, B, 2^dim)`` rows and weights, one gather). Same values to float
        rounding; several times slower."""
        p = ((x + 1) * 0.5).clamp(0, 1)
        pos = p[None] * self.res[:, None, None]                 # (L, B, dim)
        # The last cell includes the far edge, so p = 1 interpolates to its vertex.
        cell = torch.minimum(pos.floor().long(), (self.res.long() - 1).view(-1, 1, 1))
        frac = pos - cell                                       # (L, B, dim) in [0, 1]
        vertex = cell[:, :, None, :] + self.corners[None, None]  # (L, B, C, dim)
        rows = self.vertex_index(vertex)                         # (L, B, C)
        c = self.corners[None, None].to(frac.dtype)
        weight = torch.where(c > 0, frac[:, :, None, :], 1 - frac[:, :, None, :]).prod(-1)  # (L, B, C)
        feats = F.embedding(rows, self.table)                    # (L, B, C, F)
        out = (feats * weight[..., None]).sum(2)                 # (L, B, F)
        return out.permute(1, 0, 2).reshape(x.shape[0], -1)


class PositionalEncoding(nn.Module):
    """NLA's positional encoding: ``(B, D)`` → ``(B, D · (1 + 2 · n_freqs))``.

    ``n_freqs = 0`` passes the coordinates through (NLA's mapping networks).
    """

    def __init__(self, dim: int, n_freqs: int):
        super().__init__()
        self.dim, self.n_freqs = dim, n_freqs
        self.register_buffer("freqs", (2.0 ** torch.arange(n_freqs)) * math.pi, persistent=False)

    @property
    def out_dim(self) -> int:
        return self.dim * (1 + 2 * self.n_freqs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.n_freqs == 0:
            return x
        angles = (x[:, :, None] * self.freqs).flatten(1)
        return torch.cat([x, torch.sin(angles), torch.cos(angles)], 1)
