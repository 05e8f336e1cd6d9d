"""ContextBroadcasting is uniform attention mixed half and half with the input."""
import torch

from cb_transfer.models import ContextBroadcasting


def uniform_attention(x):
    """Attention whose logits are all zero: softmax gives every token weight 1/N."""
    batch, tokens, _ = x.shape
    weights = torch.softmax(torch.zeros(batch, tokens, tokens, dtype=x.dtype), dim=-1)
    return weights @ x


def test_cb_is_uniform_attention_mixed_with_the_input():
    x = torch.randn(2, 197, 48, dtype=torch.float64)
    expected = 0.5 * x + 0.5 * uniform_attention(x)
    assert torch.allclose(ContextBroadcasting()(x), expected, atol=1e-12)


def test_plain_cb_has_no_parameters():
    assert list(ContextBroadcasting().parameters()) == []


def test_scaled_cb_starts_as_plain_cb_with_c_parameters():
    x = torch.randn(3, 50, 32)
    scaled = ContextBroadcasting(dim=32, scaled=True)
    assert sum(p.numel() for p in scaled.parameters()) == 32
    assert torch.allclose(scaled(x), ContextBroadcasting()(x), atol=1e-6)


def test_scaled_cb_mixes_each_channel_by_its_strength():
    x = torch.randn(2, 10, 4, dtype=torch.float64)
    scaled = ContextBroadcasting(dim=4, scaled=True).double()
    strength = torch.tensor([0.0, 0.25, 0.9, 1.0], dtype=torch.float64)
    with torch.no_grad():
        scaled.strength.copy_(strength)
    expected = (1 - strength) * x + strength * uniform_attention(x)
    assert torch.allclose(scaled(x), expected, atol=1e-12)
    # channel 0 is untouched, channel 3 is the mean alone
    assert torch.equal(scaled(x)[..., 0], x[..., 0])

    scaled(x).square().sum().backward()
    assert scaled.strength.grad is not None and scaled.strength.grad.abs().sum() > 0


def test_scaled_cb_needs_dim():
    import pytest
    with pytest.raises(ValueError, match='needs dim'):
        ContextBroadcasting(scaled=True)
