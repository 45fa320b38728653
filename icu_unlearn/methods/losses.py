"""Every loss the fine-tune and the unlearning methods use, written once; methods compose them.

All functions take causal-LM ``logits`` ``[B, T, V]`` and ``labels`` ``[B, T]`` aligned with the input ids
(``-100`` where no loss is taken: prompt, image tokens, padding), and shift internally so that position ``t``
predicts token ``t + 1`` — the convention of Hugging Face causal LMs. The formulas follow the papers:
MLLMU-Bench (GA, GA-Diff, KL-Min), TOFU (the KL term), NPO as implemented by OpenUnlearning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from icu_unlearn.models.encoding import IGNORE_INDEX


def _shift(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the last logit and the first label so that ``logits[:, t]`` scores ``labels[:, t]``."""
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not align")
    return logits[:, :-1, :].float(), labels[:, 1:]


def token_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of every label token ``[B, T-1]`` and the mask of positions that count (bool)."""
    logits, labels = _shift(logits, labels)
    mask = labels.ne(IGNORE_INDEX)
    safe = labels.masked_fill(~mask, 0)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


def nll_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_NLL: mean token cross-entropy over all answer tokens of the batch (labels ``!= -100``).

    Identical to the loss Hugging Face causal LMs compute from ``labels``. A batch without any answer token
    gives 0 (with a gradient path), not NaN.

    Data parallel (``torch.distributed`` initialised, gradients enabled): the denominator is the *mean* token
    count over the processes, so DDP's average of the per-process gradients is the gradient of the token mean
    over the global batch — the same loss as one process with the whole batch, not a mean of per-process means.
    Every process must then call this the same number of times (the training loop guarantees it).
    """
    return nll_loss_parts([(logits, labels)])


def nll_loss_parts(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """:func:`nll_loss` of one batch that was run as several padded parts (``[(logits, labels), ...]``).

    The token cross-entropies of every part are summed and divided by the token count of all parts, so the
    value and its gradient equal :func:`nll_loss` of the whole batch padded to one length: padding a few long
    rows into their own part changes the compute, not the objective.
    """
    total, n = 0.0, 0
    for logits, labels in parts:
        logits, labels = _shift(logits, labels)
        n = n + labels.ne(IGNORE_INDEX).sum()
        total = total + F.cross_entropy(
            logits.reshape(-1, logits.size(-1)),
            labels.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
    return total / _mean_over_processes(torch.as_tensor(n)).clamp(min=1)


def _mean_over_processes(n: torch.Tensor) -> torch.Tensor:
    """``n`` averaged over the data-parallel processes (``n`` itself when not distributed or not training)."""
    import torch.distributed as dist

    if not (torch.is_grad_enabled() and dist.is_available() and dist.is_initialized()):
        return n.float()
    n = n.detach().float().clone()
    dist.all_reduce(n)
    return n / dist.get_world_size()


def ga_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Gradient ascent: ``-L_NLL`` (minimising it raises the NLL of the forget answers)."""
    return -nll_loss(logits, labels)


def sequence_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sequence *summed* log-probability of the answer tokens, ``[B]`` (log π(y_i | x_i), as NPO uses)."""
    logp, _ = token_log_probs(logits, labels)
    return logp.sum(dim=-1)


def npo_loss(logp_theta: torch.Tensor, logp_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO: ``(2/β) · mean_i −log σ(−β · (log π_θ(y_i|x_i) − log π_ref(y_i|x_i)))``.

    Args:
        logp_theta: per-sequence summed log-probs under the model being trained, ``[B]``.
        logp_ref: the same under the frozen reference model, ``[B]`` (no gradient flows into it).
        beta: inverse temperature β > 0.
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    log_ratio = logp_theta - logp_ref.detach()
    # −log σ(−x) = softplus(x), numerically stable for large |x|.
    return (2.0 / beta) * F.softplus(beta * log_ratio).mean()


def kl_to_reference(
    logits: torch.Tensor, ref_logits: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """KL(p_ref ‖ p_θ) over every (non-padding) position and the whole vocabulary, ``batchmean``.

    As TOFU / MLLMU-Bench compute it: logits are flattened to ``[positions, vocab]`` before
    ``kl_div(..., reduction="batchmean")``, so the "batch" is the positions — the result is the mean over
    positions of ``Σ_v p_ref(v) (log p_ref(v) − log p_θ(v))``, here over the positions where ``attention_mask``
    is 1 (padding excluded). A per-sequence sum instead would weigh the KL ~60× more than the token-mean NLL
    terms it is added to.
    """
    if logits.shape != ref_logits.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and reference {tuple(ref_logits.shape)} differ")
    logp = torch.log_softmax(logits.float(), dim=-1)
    logq = torch.log_softmax(ref_logits.detach().float(), dim=-1)
    per_pos = F.kl_div(logp, logq, reduction="none", log_target=True).sum(-1)
    if attention_mask is None:
        return per_pos.mean()
    mask = attention_mask.to(per_pos.dtype)
    return (per_pos * mask).sum() / mask.sum().clamp(min=1)
