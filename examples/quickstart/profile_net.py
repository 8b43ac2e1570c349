"""The quick start's network: a small torch module, with fixed weights, that
summarizes a temperature profile as (peak, total heat, steepest slope). The
driver stores it in the feature store (``add_ml_model``); the analysis model
runs it there, beside the data, on each member's profile (``run_model``)."""

import torch


class ProfileNet(torch.nn.Module):
    """(n,) profile -> (3,) [peak, total heat, steepest slope]."""

    def __init__(self) -> None:
        super().__init__()
        self.slope = torch.nn.Conv1d(1, 1, kernel_size=2, bias=False)  # u[i+1] - u[i]
        with torch.no_grad():
            self.slope.weight.copy_(torch.tensor([[[-1.0, 1.0]]]))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x = u.reshape(1, 1, -1).to(torch.float32)
        return torch.stack([x.max(), x.sum(), self.slope(x).abs().max()])
