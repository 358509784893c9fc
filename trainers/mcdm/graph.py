"""Graph layers over the few modality nodes of MCDM, written densely in plain PyTorch.

MCDM's graphs have one node per modality (4 by default), fully connected without self-loops, so a dense
``(N, N)`` operator replaces PyTorch Geometric's edge lists (whose sparse extension does not install
here).

:class:`UnitaryGraphLayer` is the authors' ``GraphAttentionLayer_V2`` (SCD-MMPSR ``src/models/layers.py``),
which despite its name is a unitary GCN: a bias-free linear map ``h = W x``, then ``exp(i Â)`` applied to
``h`` read as a complex vector (first half of the channels = real part, second half = imaginary part) by
its Taylor series truncated after ``T`` terms, ``Σ_{k=0..T} (i Â)^k h / k!``, then a global bias, ReLU and
dropout. ``Â = D^{-1/2} A D^{-1/2}`` with ``A = J − I``, i.e. ``(J − I)/(N − 1)``. The authors apply
``i Â`` as a message-passing step followed by "negate the second half, roll by half", which is the
multiplication by ``i``; here the truncated series is summed once per node count into two real
``(N, N)`` matrices (its real and imaginary parts), so the layer costs two small matmuls instead of
``T`` propagations. Same numbers (tests compare both ways and ``torch.linalg.matrix_exp``).

:class:`AttentionGraphLayer` is MCDM-1's vanilla graph attention (the authors' ``GraphAttentionLayer``):
every node attends to every node, self included.
"""

from __future__ import annotations

import functools

import torch
from torch import nn


def normalised_adjacency(n_nodes: int) -> torch.Tensor:
    """``D^{-1/2} (J − I) D^{-1/2} = (J − I)/(N − 1)`` in float64; all zeros for a single node.

    A lone node has no edges: the GCN normalisation gives it degree 0, whose inverse square root PyG
    sets to 0, so nothing propagates.
    """
    if n_nodes < 1:
        raise ValueError(f"a graph needs at least one node, got {n_nodes}")
    ones = torch.ones(n_nodes, n_nodes, dtype=torch.float64)
    adjacency = ones - torch.eye(n_nodes, dtype=torch.float64)
    return adjacency / (n_nodes - 1) if n_nodes > 1 else adjacency


@functools.lru_cache(maxsize=64)
def taylor_operator(n_nodes: int, terms: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts of ``Σ_{k=0..terms} (i Â)^k / k!`` for the ``n_nodes`` graph (float64)."""
    adjacency = normalised_adjacency(n_nodes).to(torch.complex128)
    step = 1j * adjacency
    term = torch.eye(n_nodes, dtype=torch.complex128)
    total = term.clone()
    for k in range(terms):
        term = step @ term / (k + 1)
        total = total + term
    return total.real.contiguous(), total.imag.contiguous()


class UnitaryGraphLayer(nn.Module):  # type: ignore[misc]
    """Unitary GCN on a fully connected graph of the ``N`` nodes of ``x`` (``[B, N, dim]`` in and out).

    Args:
        dim: node width (even: half real, half imaginary channels).
        taylor_terms: ``T``, the number of series terms after the identity (authors: 10).
        dropout: dropout after the ReLU (the authors' layer fixes it at 0.2).
    """

    def __init__(self, dim: int, *, taylor_terms: int = 10, dropout: float = 0.2) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"the unitary graph layer needs an even width (real | imaginary), got {dim}")
        self.dim = dim
        self.taylor_terms = taylor_terms
        self.lin = nn.Linear(dim, dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        real_op, imag_op = taylor_operator(x.shape[1], self.taylor_terms)
        real_op = real_op.to(device=h.device, dtype=h.dtype)
        imag_op = imag_op.to(device=h.device, dtype=h.dtype)
        half = self.dim // 2
        re, im = h[..., :half], h[..., half:]
        # (R + iI)(a + ib) = (Ra − Ib) + i(Ia + Rb), node-mixing only: channels never mix here.
        out_re = torch.einsum("ij,bjd->bid", real_op, re) - torch.einsum("ij,bjd->bid", imag_op, im)
        out_im = torch.einsum("ij,bjd->bid", imag_op, re) + torch.einsum("ij,bjd->bid", real_op, im)
        out = torch.cat([out_re, out_im], dim=-1) + self.bias
        return self.dropout(torch.relu(out))


class AttentionGraphLayer(nn.Module):  # type: ignore[misc]
    """MCDM-1's graph attention over all node pairs (self included), ``[B, N, dim]`` in and out.

    ``e_ij = LeakyReLU(aᵀ [W x_i ‖ W x_j])``, softmax over ``j``, dropout on the attention,
    ``Σ_j α_ij W x_j``; ``aᵀ [u ‖ v]`` is computed as ``a_1ᵀ u + a_2ᵀ v`` so no ``[B, N, N, 2·dim]``
    tensor is built.
    """

    def __init__(self, dim: int, *, dropout: float, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.dim = dim
        self.W = nn.Linear(dim, dim, bias=False)
        self.a = nn.Parameter(torch.empty(2 * dim, 1))
        nn.init.xavier_uniform_(self.a, gain=1.414)
        self.leaky_relu = nn.LeakyReLU(negative_slope)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wh = self.W(x)
        src = wh @ self.a[: self.dim]                      # [B, N, 1]: a_1ᵀ W x_i
        dst = wh @ self.a[self.dim:]                       # [B, N, 1]: a_2ᵀ W x_j
        scores = self.leaky_relu(src + dst.transpose(1, 2))  # [B, N, N]
        attention = self.dropout(torch.softmax(scores, dim=-1))
        return attention @ wh
