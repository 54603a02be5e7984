"""Learning-rate schedules, computed per iteration, and the paper's warm-up.

One object, :class:`LRSchedule`, gives the base rate of every iteration;
:func:`apply_lr` writes it into an optimiser whose parameter groups may carry an
``lr_scale`` (a group's rate = base rate x its scale), which is how
discriminative learning rates work without a second mechanism.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from resnet_nb.params import check_choice

__all__ = ["PAPER_STEP_SCHEDULE", "SCHEDULES", "LRSchedule", "apply_lr", "needs_warmup"]

SCHEDULES = ("onecycle", "cosine", "step", "constant")

#: The paper's CIFAR-10 schedule (He et al., 2016, section 4.2), in iterations.
#: The engine keeps its proportions (drops at 1/2 and 3/4 of the run) so it
#: scales to any number of iterations; 64k iterations at batch 128 on 45k images
#: is about 182 epochs.
PAPER_STEP_SCHEDULE: dict[str, Any] = {
    "lr": 0.1,
    "batch_size": 128,
    "milestones": (32_000, 48_000),
    "total_iterations": 64_000,
    "warmup_lr": 0.01,
    "warmup_until_train_error": 0.80,
    "warmup_iterations": 400,
    "warmup_min_depth": 110,
}


class LRSchedule:
    """Learning rate as a function of the iteration, plus the paper's warm-up.

    ``onecycle``: linear from ``peak/25`` to ``peak`` over the first 25% of the
    iterations, then linear down to 0 (Smith & Topin, 2019). ``cosine``: half a
    cosine from ``peak`` to 0. ``step``: ``peak``, divided by 10 at 1/2 and
    again at 3/4 of the run (the paper's 32k and 48k of 64k iterations).
    ``constant``: ``peak`` throughout.

    With ``warmup=True`` the rate is ``peak/10`` until the training error over
    the last 10 iterations falls below 80% (the paper's ResNet-110 warm-up,
    about 400 of 64k iterations there), and at most for
    ``total_steps * 800 / 64000`` iterations, twice the paper's figure scaled
    to this run, so a network that never learns cannot stay in warm-up.
    """

    WINDOW = 10

    def __init__(self, kind: str, *, peak_lr: float, total_steps: int, warmup: bool = False):
        check_choice("schedule", kind, SCHEDULES)
        self.kind = kind
        self.peak_lr = float(peak_lr)
        self.total_steps = int(total_steps)
        self.warmup_active = bool(warmup)
        paper = PAPER_STEP_SCHEDULE
        self.warmup_cap = max(
            1, round(total_steps * 2 * paper["warmup_iterations"] / paper["total_iterations"])
        )
        self.warmup_end: int | None = None
        self._errors: list[float] = []

    @property
    def milestones(self) -> tuple[int, int]:
        """Iterations at which the step schedule divides the rate by 10."""
        total = self.total_steps
        paper_total = PAPER_STEP_SCHEDULE["total_iterations"]
        m1, m2 = PAPER_STEP_SCHEDULE["milestones"]
        return round(total * m1 / paper_total), round(total * m2 / paper_total)

    def base_lr(self, step: int) -> float:
        """The schedule's rate at iteration ``step`` (0-based), ignoring warm-up."""
        peak, total = self.peak_lr, self.total_steps
        t = min(max(step, 0), total)
        if self.kind == "onecycle":
            up = max(1, round(0.25 * total))
            if t < up:
                return peak * (0.04 + 0.96 * t / up)
            return peak * max(0.0, (total - t) / max(1, total - up))
        if self.kind == "cosine":
            return peak * 0.5 * (1.0 + math.cos(math.pi * t / total))
        if self.kind == "constant":
            return peak
        m1, m2 = self.milestones
        return peak * (0.1 ** ((t >= m1) + (t >= m2)))

    def lr(self, step: int) -> float:
        """The rate to use at iteration ``step``, warm-up included."""
        if self.warmup_active:
            return self.peak_lr * 0.1
        return self.base_lr(step)

    def observe(self, step: int, train_error: Callable[[], float]) -> None:
        """Feed the error of iteration ``step``'s batch (only read during warm-up)."""
        if not self.warmup_active:
            return
        self._errors = (self._errors + [float(train_error())])[-self.WINDOW :]
        window_full = len(self._errors) == self.WINDOW
        below = sum(self._errors) / self.WINDOW < PAPER_STEP_SCHEDULE["warmup_until_train_error"]
        if (window_full and below) or step + 1 >= self.warmup_cap:
            self.warmup_active = False
            self.warmup_end = step + 1

    def state_dict(self) -> dict[str, Any]:
        """Primitives only, so checkpoints load with ``weights_only=True``."""
        return {
            "kind": self.kind,
            "peak_lr": self.peak_lr,
            "total_steps": self.total_steps,
            "warmup_active": self.warmup_active,
            "warmup_end": self.warmup_end,
            "errors": list(self._errors),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self.kind = state["kind"]
        self.peak_lr = state["peak_lr"]
        self.total_steps = state["total_steps"]
        self.warmup_active = state["warmup_active"]
        self.warmup_end = state["warmup_end"]
        self._errors = list(state["errors"])


def apply_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's rate to ``lr`` times its ``lr_scale`` (default 1)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def needs_warmup(setting: str, schedule: str, depth: int) -> bool:
    """Whether a run uses the paper's warm-up.

    ``"on"``/``"off"`` decide directly. ``"auto"`` follows the paper, which
    warmed up its 110-layer network (and deeper) under the step schedule and
    no other: the ``depth`` counted on the built model (weighted layers, see
    :func:`resnet_nb.models.weighted_depth`) decides, not the model's name.
    """
    if setting != "auto":
        return setting == "on"
    return schedule == "step" and depth >= PAPER_STEP_SCHEDULE["warmup_min_depth"]
