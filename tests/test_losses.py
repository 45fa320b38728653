"""Losses against hand computations on tiny tensors (no model needed)."""

from __future__ import annotations

import math

import pytest
import torch

from icu_unlearn.methods import losses

# Two sequences, 3 positions, vocabulary of 3. Position t predicts token t+1 (labels are shifted inside).
LOGITS = torch.tensor(
    [
        [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [9.0, 9.0, 9.0]],
        [[0.0, math.log(3.0), 0.0], [0.0, 0.0, 0.0], [9.0, 9.0, 9.0]],
    ]
)
# Sequence 0: answer tokens at positions 1 (token 0) and 2 (token 2); sequence 1: only position 1 (token 1).
LABELS = torch.tensor([[-100, 0, 2], [-100, 1, -100]])

# Hand computation. Seq 0: p(0 | logits[0,0]) = 1/3; p(2 | logits[0,1]=[1,0,0]) = 1/(e+2).
LP00 = math.log(1 / 3)
LP01 = math.log(1 / (math.e + 2))
# Seq 1: p(1 | logits[1,0]=[0, log 3, 0]) = 3/5.
LP10 = math.log(3 / 5)


def test_nll_is_mean_over_answer_tokens():
    expected = -(LP00 + LP01 + LP10) / 3
    assert losses.nll_loss(LOGITS, LABELS).item() == pytest.approx(expected, rel=1e-6)


def test_nll_matches_transformers_convention():
    ref = torch.nn.functional.cross_entropy(LOGITS[:, :-1].reshape(-1, 3), LABELS[:, 1:].reshape(-1))
    assert losses.nll_loss(LOGITS, LABELS).item() == pytest.approx(ref.item(), rel=1e-6)


def test_ga_is_negative_nll():
    assert losses.ga_loss(LOGITS, LABELS).item() == pytest.approx(-(-(LP00 + LP01 + LP10) / 3), rel=1e-6)


def test_nll_without_answer_tokens_is_zero_not_nan():
    labels = torch.full_like(LABELS, -100)
    out = losses.nll_loss(LOGITS.clone().requires_grad_(), labels)
    assert out.item() == 0.0
    out.backward()  # still differentiable


def test_sequence_log_probs_are_summed_per_sequence():
    out = losses.sequence_log_probs(LOGITS, LABELS)
    assert out.tolist() == pytest.approx([LP00 + LP01, LP10], rel=1e-6)


def test_npo_against_hand_formula():
    theta = torch.tensor([-1.0, -3.0])
    ref = torch.tensor([-2.0, -1.0])
    beta = 0.5
    # (2/β) · mean_i −log σ(−β (θ_i − ref_i)); σ(z) = 1/(1+e^{−z}).
    terms = [
        -math.log(1 / (1 + math.exp(beta * (t - r)))) for t, r in zip([-1.0, -3.0], [-2.0, -1.0], strict=True)
    ]
    expected = (2 / beta) * sum(terms) / 2
    assert losses.npo_loss(theta, ref, beta).item() == pytest.approx(expected, rel=1e-6)


def test_npo_at_reference_equals_2_log2_over_beta():
    x = torch.tensor([-4.0, -7.0])
    assert losses.npo_loss(x, x, 2.0).item() == pytest.approx(2 / 2.0 * math.log(2), rel=1e-6)


def test_npo_gradient_pushes_logprob_down_and_stops_at_reference():
    theta = torch.tensor([-1.0], requires_grad=True)
    losses.npo_loss(theta, torch.tensor([-1.0], requires_grad=True), 1.0).backward()
    # d/dθ (2/β)·softplus(β(θ − r)) = 2·σ(β(θ − r)) = 1 at θ = r: minimising lowers log π_θ.
    assert theta.grad.item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        losses.npo_loss(theta, theta, 0.0)


def test_kl_batchmean_against_hand_computation():
    logits = torch.tensor([[[0.0, 0.0], [1.0, 0.0]], [[0.0, 2.0], [5.0, 5.0]]])
    ref = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 9.0]]])
    mask = torch.tensor([[1, 1], [1, 0]])  # last position of sequence 1 is padding

    def kl(p_logits, q_logits):  # KL(q ‖ p) for 2-way softmax
        p = torch.softmax(torch.tensor(p_logits), -1).tolist()
        q = torch.softmax(torch.tensor(q_logits), -1).tolist()
        return sum(qi * (math.log(qi) - math.log(pi)) for pi, qi in zip(p, q, strict=True))

    # Mean over the 3 non-padding positions (TOFU's flattened batchmean); position (1, 1) is padding.
    expected = (kl([0.0, 0.0], [1.0, 0.0]) + kl([1.0, 0.0], [1.0, 0.0]) + kl([0.0, 2.0], [0.0, 0.0])) / 3
    assert losses.kl_to_reference(logits, ref, mask).item() == pytest.approx(expected, rel=1e-6)
    unmasked = expected * 3 / 4 + kl([5.0, 5.0], [0.0, 9.0]) / 4
    assert losses.kl_to_reference(logits, ref).item() == pytest.approx(unmasked, rel=1e-6)
    # Without a mask every position counts; KL of a distribution to itself is 0.
    assert losses.kl_to_reference(ref, ref).item() == pytest.approx(0.0, abs=1e-7)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        losses.nll_loss(LOGITS, LABELS[:, :2])
    with pytest.raises(ValueError):
        losses.kl_to_reference(LOGITS, LOGITS[:, :2])
