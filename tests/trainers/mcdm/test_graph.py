"""The dense graph layers against direct computations of the authors' equations."""

from __future__ import annotations

import pytest
import torch

from affectcache.trainers.mcdm.graph import (
    AttentionGraphLayer,
    UnitaryGraphLayer,
    normalised_adjacency,
    taylor_operator,
)


def _authors_unitary(layer: UnitaryGraphLayer, x: torch.Tensor) -> torch.Tensor:
    """GraphAttentionLayer_V2 step by step: edge list, GCN norm, scatter-add, ×multiplier, roll, Taylor."""
    _, n, dim = x.shape
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    row = torch.tensor([p[0] for p in pairs], dtype=torch.long)   # source
    col = torch.tensor([p[1] for p in pairs], dtype=torch.long)   # target
    weight = torch.ones(len(pairs), dtype=x.dtype)
    deg = torch.zeros(n, dtype=x.dtype).index_add_(0, col, weight)
    inv_sqrt = deg.pow(-0.5)
    inv_sqrt[torch.isinf(inv_sqrt)] = 0
    norm = inv_sqrt[row] * weight * inv_sqrt[col]
    multiplier = torch.ones(dim, dtype=x.dtype)
    multiplier[dim // 2:] = -1

    def conv(z: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(z).index_add_(1, col, z[:, row] * norm[None, :, None])
        return torch.roll(out * multiplier, dim // 2, -1)

    h = layer.lin(x)
    total, term = h.clone(), h.clone()
    for k in range(layer.taylor_terms):
        term = conv(term) / (k + 1)
        total = total + term
    return torch.relu(total + layer.bias)


@pytest.mark.parametrize("n_nodes", [4, 3, 2, 1])
def test_unitary_layer_matches_the_message_passing_equations(n_nodes: int) -> None:
    torch.manual_seed(0)
    layer = UnitaryGraphLayer(16, taylor_terms=10).eval()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(5, n_nodes, 16)
    with torch.no_grad():
        got, want = layer(x), _authors_unitary(layer, x)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_unitary_layer_is_exp_of_i_adjacency_on_complex_channels() -> None:
    torch.manual_seed(1)
    layer = UnitaryGraphLayer(8).double().eval()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(3, 4, 8, dtype=torch.float64)
    with torch.no_grad():
        h = layer.lin(x)
        z = torch.complex(h[..., :4], h[..., 4:])
        op = torch.linalg.matrix_exp(1j * normalised_adjacency(4).to(torch.complex128))
        rotated = torch.einsum("ij,bjd->bid", op, z)
        want = torch.relu(torch.cat([rotated.real, rotated.imag], -1) + layer.bias)
        torch.testing.assert_close(layer(x), want, atol=1e-6, rtol=0)
    # exp(iÂ) with Â symmetric is unitary: the truncated series nearly preserves each channel's norm.
    real, imag = taylor_operator(4, 10)
    series = torch.complex(real, imag)
    identity = torch.eye(4, dtype=torch.complex128)
    torch.testing.assert_close(series.conj().T @ series, identity, atol=1e-7, rtol=0)


def test_adjacency_is_symmetric_gcn_normalisation_without_self_loops() -> None:
    expected = torch.tensor([[0, 1, 1, 1], [1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0]], dtype=torch.float64) / 3
    torch.testing.assert_close(normalised_adjacency(4), expected)
    assert normalised_adjacency(1).eq(0).all()


def test_unitary_layer_refuses_odd_width() -> None:
    with pytest.raises(ValueError, match="even width"):
        UnitaryGraphLayer(7)


def test_attention_layer_matches_the_concatenation_form() -> None:
    torch.manual_seed(2)
    layer = AttentionGraphLayer(6, dropout=0.0).eval()
    x = torch.randn(2, 4, 6)
    with torch.no_grad():
        wh = layer.W(x)
        n = x.shape[1]
        pairs = torch.cat([wh.unsqueeze(2).expand(-1, -1, n, -1), wh.unsqueeze(1).expand(-1, n, -1, -1)], -1)
        scores = torch.nn.functional.leaky_relu((pairs @ layer.a).squeeze(-1), 0.2)
        want = torch.softmax(scores, -1) @ wh
        torch.testing.assert_close(layer(x), want, atol=1e-6, rtol=0)
