"""Supervised contrastive loss (Khosla et al. 2020, eq. 2 "L_out"), as used by BRIDGE-LC §3.4."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supcon_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Supervised contrastive loss over a batch of embeddings.

    Each embedding is L2-normalised. For anchor i with positives P(i) (same label, j ≠ i),
    ``ℓ_i = −1/|P(i)| Σ_p log( exp(z_i·z_p/τ) / Σ_{a≠i} exp(z_i·z_a/τ) )``; the loss is the
    mean over anchors that have at least one positive (0 if none has).

    In BRIDGE-LC the batch holds 2B embeddings: the B invariant ones labelled by class c and
    the B region-specific ones labelled C + region, so the two branches are pushed apart.

    Args:
        embeddings: float tensor (M, D).
        labels: int64 tensor (M,).
        temperature: τ (paper/authors' code: 0.07).

    Returns:
        A scalar tensor.
    """
    z = F.normalize(embeddings.float(), dim=1)
    logits = z @ z.T / temperature
    m = len(z)
    self_mask = torch.eye(m, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not has.any():
        return embeddings.sum() * 0.0
    summed = torch.where(pos, log_prob, torch.zeros_like(log_prob)).sum(1)
    return -(summed[has] / n_pos[has]).mean()
