"""Training for the small torch examples: plain Adam + cross-entropy over shuffled mini-batches."""

from __future__ import annotations


def fit_classifier(model, x, y, *, epochs: int, batch: int, lr: float):
    """Train ``model`` in place on numpy ``x``/``y``; the caller seeds torch before building it."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        for i in torch.randperm(len(xt)).split(batch):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[i]), yt[i]).backward()
            opt.step()
    return model.eval()
