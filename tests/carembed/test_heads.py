from __future__ import annotations

import torch

from carembed.heads import GeM, HeadConfig, Pool, build_head


def test_gem_with_p1_is_average_and_large_p_approaches_max() -> None:
    x = torch.rand(2, 3, 4, 5) + 0.1
    gem = GeM(p=1.0)
    torch.testing.assert_close(gem(x), x.mean(dim=(2, 3)))
    big = GeM(p=60.0)(x)
    torch.testing.assert_close(big, x.amax(dim=(2, 3)), rtol=0.05, atol=0.0)


def test_pool_passes_vectors_through() -> None:
    v = torch.rand(3, 7)
    assert torch.equal(Pool("gem")(v), v)


def test_untrained_skip_head_is_identity_and_linear_changes_dim() -> None:
    x = torch.randn(4, 16)
    for hidden in (0, 8):
        head = build_head(HeadConfig(kind="skip", in_dim=16, out_dim=16, hidden_dim=hidden))
        torch.testing.assert_close(head(x), x)
    linear = build_head(HeadConfig(kind="linear", in_dim=16, out_dim=5))
    assert linear(x).shape == (4, 5)
    mlp = build_head(HeadConfig(kind="mlp", in_dim=16, out_dim=6, hidden_dim=32))
    assert mlp(x).shape == (4, 6)
