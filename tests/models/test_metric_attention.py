"""MetricAttention against timm's Attention and against brute-force formulas of each score."""

import math

import pytest
import torch
from timm.models.vision_transformer import Attention as TimmAttention
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from attnconv_pl.models.metric_attention import (
    SCORES,
    MetricAttention,
    pairwise_sq_dists,
    use_metric_attention,
)

DIM, HEADS = 8, 2
DISTANCE_SCORES = ("shared_metric", "two_projection")


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tokens(batch=2, n=5, dim=DIM, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n, dim, generator=generator, dtype=torch.float64)


def attention(score: str, **kwargs) -> MetricAttention:
    torch.manual_seed(0)
    module = MetricAttention(DIM, num_heads=HEADS, score=score, qkv_bias=True, **kwargs).double()
    with torch.no_grad():  # non-zero biases, so that a dropped or misplaced bias shows
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return module.eval()


def brute_force(module: MetricAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (B, H, N, N) and output (B, N, C) by a loop over heads and token pairs."""
    batch, n, dim = x.shape
    d_h = dim // HEADS
    tau = module.tau.item()
    if module.score == "shared_metric":
        w_q = w_k = module.metric.weight
        b_q = b_k = torch.zeros(dim, dtype=x.dtype)
        w_v, b_v = module.v.weight, module.v.bias
    else:
        w_q, w_k, w_v = module.qkv.weight.chunk(3)
        b_q, b_k, b_v = module.qkv.bias.chunk(3)
    scores = torch.empty(batch, HEADS, n, n, dtype=x.dtype)
    heads_out = torch.zeros(batch, n, dim, dtype=x.dtype)
    for b in range(batch):
        for h in range(HEADS):
            rows = slice(h * d_h, (h + 1) * d_h)
            for i in range(n):
                for j in range(n):
                    if module.score == "dot":
                        s = (w_q[rows] @ x[b, i] + b_q[rows]) @ (w_k[rows] @ x[b, j] + b_k[rows])
                    elif module.score == "shared_metric":
                        s = -torch.sum((w_q[rows] @ (x[b, i] - x[b, j])) ** 2)
                    else:
                        q_i = w_q[rows] @ x[b, i] + b_q[rows]
                        k_j = w_k[rows] @ x[b, j] + b_k[rows]
                        s = -torch.sum((q_i - k_j) ** 2)
                    scores[b, h, i, j] = s / tau
            weights = torch.softmax(scores[b, h], dim=-1)
            values = x[b] @ w_v[rows].T + b_v[rows]
            heads_out[b, :, rows] = weights @ values
    return scores, module.proj(heads_out)


def test_pairwise_sq_dists_equals_cdist_squared():
    a, b = tokens(n=6, seed=1), tokens(n=4, seed=2)
    torch.testing.assert_close(pairwise_sq_dists(a, b), torch.cdist(a, b) ** 2)
    assert (pairwise_sq_dists(a, a).diagonal(dim1=-2, dim2=-1) >= 0).all()


@pytest.mark.parametrize("score", SCORES)
def test_output_shapes(score):
    module = attention(score)
    x = tokens(batch=3, n=7)
    assert module(x).shape == (3, 7, DIM)
    assert module.scores(x).shape == (3, HEADS, 7, 7)


@pytest.mark.parametrize("score", SCORES)
def test_scores_and_output_equal_brute_force_formula(score):
    module, x = attention(score), tokens()
    expected_scores, expected_out = brute_force(module, x)
    torch.testing.assert_close(module.scores(x), expected_scores)
    torch.testing.assert_close(module(x), expected_out)


def test_distance_scores_are_nonpositive_and_shared_metric_is_zero_on_diagonal():
    x = tokens()
    for score in DISTANCE_SCORES:
        assert (attention(score).scores(x) <= 0).all()
    diagonal = attention("shared_metric").scores(x).diagonal(dim1=-2, dim2=-1)
    torch.testing.assert_close(diagonal, torch.zeros_like(diagonal))


@pytest.mark.parametrize("score", SCORES)
def test_no_unexpected_masking(score):
    module, x = attention(score), tokens(n=9)
    weights = module.attention_weights(x)
    assert (weights > 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights[..., 0]))
    # every output token depends on every input token
    x = x.clone().requires_grad_(True)
    module(x)[:, 0].sum().backward()
    assert (x.grad.abs().sum(-1) > 0).all()


@pytest.mark.parametrize("score", SCORES)
def test_explicit_masks_follow_sdpa_semantics(score):
    module, x = attention(score), tokens(n=4)
    allowed = torch.tril(torch.ones(4, 4, dtype=torch.bool))
    causal = module.attention_weights(x, is_causal=True)
    assert (causal[..., ~allowed] == 0).all() and (causal[..., allowed] > 0).all()
    torch.testing.assert_close(module.attention_weights(x, attn_mask=allowed), causal)
    torch.testing.assert_close(module(x, attn_mask=allowed), module(x, is_causal=True))


def test_dot_equals_timm_attention_with_copied_weights():
    torch.manual_seed(0)
    timm_attn = TimmAttention(DIM, num_heads=HEADS, qkv_bias=True).double().eval()
    ours = MetricAttention(DIM, num_heads=HEADS, score="dot", qkv_bias=True).double().eval()
    ours.load_state_dict(timm_attn.state_dict(), strict=False)
    x = tokens()
    torch.testing.assert_close(ours(x), timm_attn(x))


@pytest.mark.parametrize("learn_tau", [False, True])
@pytest.mark.parametrize("score", SCORES)
def test_gradients_reach_every_parameter(score, learn_tau):
    module = attention(score, learn_tau=learn_tau)
    module(tokens()).pow(2).sum().backward()
    names = {name for name, _ in module.named_parameters()}
    assert ("log_tau" in names) == learn_tau
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_tau_default_custom_and_invalid():
    assert attention("two_projection").tau.item() == pytest.approx(math.sqrt(DIM // HEADS))
    module = attention("two_projection", tau=0.5)
    assert module.tau.item() == pytest.approx(0.5)
    x = tokens()
    torch.testing.assert_close(module.scores(x), brute_force(module, x)[0])
    with pytest.raises(ValueError, match="tau must be > 0"):
        MetricAttention(DIM, HEADS, score="dot", tau=0.0)
    with pytest.raises(ValueError, match="expected one of"):
        MetricAttention(DIM, HEADS, score="cosine")
    with pytest.raises(ValueError, match="not divisible"):
        MetricAttention(DIM, num_heads=3)


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_parameter_budget_not_above_baseline(qkv_bias):
    dim = 32
    baseline = n_params(TimmAttention(dim, num_heads=4, qkv_bias=qkv_bias))

    def count(score):
        return n_params(MetricAttention(dim, num_heads=4, score=score, qkv_bias=qkv_bias))
    assert count("dot") == baseline
    assert count("two_projection") == baseline
    # shared_metric drops exactly the key projection and the (cancelling) query bias
    assert count("shared_metric") == baseline - dim * dim - (2 * dim if qkv_bias else 0)


def tiny_vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(
        img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=3
    ).eval()


@pytest.mark.parametrize("score", SCORES)
def test_use_metric_attention_swaps_every_block(score):
    model = tiny_vit()
    images = torch.randn(2, 3, 16, 16)
    before = model(images)
    assert use_metric_attention(model, score, learn_tau=True) is model
    for block in model.blocks:
        assert isinstance(block.attn, MetricAttention) and block.attn.score == score
        assert block.attn.num_heads == 2 and block.attn.head_dim == 16
    after = model(images)
    if score == "dot":
        torch.testing.assert_close(after, before)
    model.train()
    model(images).logsumexp(-1).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_use_metric_attention_keeps_weights_of_shared_metric():
    model = tiny_vit()
    qkv = model.blocks[0].attn.qkv
    query_rows, _, value_rows = qkv.weight.detach().clone().chunk(3)
    use_metric_attention(model, "shared_metric")
    attn = model.blocks[0].attn
    torch.testing.assert_close(attn.metric.weight, query_rows)
    torch.testing.assert_close(attn.v.weight, value_rows)
    assert not attn.training


def test_use_metric_attention_rejects_models_without_timm_blocks():
    with pytest.raises(TypeError, match="no non-empty `blocks`"):
        use_metric_attention(nn.Linear(4, 4), "dot")
    model = tiny_vit()
    use_metric_attention(model, "dot")
    with pytest.raises(TypeError, match="expected timm"):
        use_metric_attention(model, "dot")
    qk_norm_vit = VisionTransformer(
        img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2, qk_norm=True
    )
    with pytest.raises(ValueError, match="qk_norm"):
        use_metric_attention(qk_norm_vit, "dot")


@pytest.mark.parametrize("score", ["shared_metric", "two_projection"])
def test_registered_models_take_the_score_option(score):
    from attnconv_pl.models import create_model

    vit = create_model("vit_tiny", num_classes=3, in_chans=1, img_size=16, depth=2, score=score, tau=2.0)
    assert all(isinstance(block.attn, MetricAttention) and block.attn.score == score for block in vit.blocks)
    assert all(block.attn.tau.item() == pytest.approx(2.0) for block in vit.blocks)
    net = create_model("attention_net", num_classes=3, in_chans=1, img_size=16, score=score)
    assert isinstance(net.mixer.attn, MetricAttention) and net.mixer.attn.score == score
    images = torch.randn(2, 1, 16, 16)
    assert vit(images).shape == net(images).shape == (2, 3)
    plain = create_model("vit_tiny", num_classes=3, in_chans=1, img_size=16, depth=2)
    assert not isinstance(plain.blocks[0].attn, MetricAttention)
