"""The paper's poly learning-rate policy: `lr = base * (1 - epoch / epochs) ** power`, stepped per epoch."""
from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR


class PolyDecay:
    """The multiplier `(1 - epoch / epochs) ** power`, clamped at 0 past the end.

    A small class rather than a lambda so that its values travel in the scheduler's state dict as
    plain numbers (LambdaLR saves a callable object's attributes, never a function).
    """

    def __init__(self, epochs: int, power: float) -> None:
        self.epochs = int(epochs)
        self.power = float(power)

    def __call__(self, epoch: int) -> float:
        return max(0.0, 1.0 - epoch / self.epochs) ** self.power


def poly_scheduler(optimizer: torch.optim.Optimizer, epochs: int, power: float = 0.8) -> LambdaLR:
    """Closed-form poly decay. LambdaLR rather than PolynomialLR: PolynomialLR derives each rate from
    the previous one (chainable form), which equals the closed form only up to rounding (measured
    5e-16 relative over 20 epochs); LambdaLR evaluates the closed form itself."""
    return LambdaLR(optimizer, PolyDecay(epochs, power))
