"""Diagrams drawn from the code: blocks and network layouts read off the ``nn.Module``.

Nothing here is a picture drawn by hand. :func:`draw_blocks` traces each block's
``forward`` with ``torch.fx`` and draws the operations in the order they run, the
residual branch in one column and the shortcut (whatever the code adds back, or
nothing) beside it. :func:`draw_layouts` runs a dummy input through a network with
a forward hook on each top-level module and draws the stem, the stages and the head
with the channels and feature-map sizes that came out. Change the code - a width,
a block, a shortcut - and the figure changes with it.

Every text uses at least :data:`resnet_nb.viz.MIN_FONT_PT` points; call
:func:`resnet_nb.viz.use_book_style` first for the book's fonts and SVG output.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from torch import nn

from resnet_nb.errors import ParameterError
from resnet_nb.models import feature_map_shapes
from resnet_nb.viz import MAX_WIDTH_IN, MIN_FONT_PT

__all__ = [
    "Step",
    "block_steps",
    "draw_block",
    "draw_blocks",
    "Stage",
    "network_stages",
    "draw_layout",
    "draw_layouts",
    "figure_texts",
]

COLORS = {
    "conv": "#cfe2f3",
    "norm": "#d9ead3",
    "act": "#fce5cd",
    "add": "#eeeeee",
    "pool": "#ead1dc",
    "shortcut": "#f3f3f3",
    "other": "#ffffff",
}
_ADDS = {operator.add, operator.iadd, torch.add}
_RELUS = {F.relu, torch.relu}


# ------------------------------------------------------------------ blocks


@dataclass(frozen=True)
class Step:
    """One operation of a block's forward pass, as drawn."""

    name: str  # the fx node name
    label: str
    kind: str  # a key of COLORS


class _Tracer(fx.Tracer):
    """Keeps the library's zero-padding shortcut as one step."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        from resnet_nb.models import ZeroPadShortcut

        return isinstance(m, ZeroPadShortcut) or super().is_leaf_module(m, qualname)


def _describe(module: nn.Module) -> tuple[str, str]:
    from resnet_nb.models import ZeroPadShortcut

    if isinstance(module, nn.Conv2d):
        k = "x".join(str(s) for s in module.kernel_size)
        stride = module.stride[0]
        label = f"{k} conv, {module.out_channels}" + (f", /{stride}" if stride > 1 else "")
        return label, "conv"
    if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
        return "BN" if isinstance(module, nn.BatchNorm2d) else type(module).__name__, "norm"
    if isinstance(module, nn.ReLU):
        return "ReLU", "act"
    if isinstance(module, ZeroPadShortcut):
        where = "zeros after" if module.pad == "after" else "zeros split"
        stride = f"subsample /{module.stride}\n" if module.stride > 1 else ""
        return f"{stride}pad {module.in_planes}->{module.out_planes}\n{where}", "shortcut"
    if isinstance(module, nn.MaxPool2d):
        return f"{module.kernel_size}x{module.kernel_size} max pool, /{module.stride}", "pool"
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "average pool", "pool"
    if isinstance(module, nn.Linear):
        return f"fc, {module.out_features}", "conv"
    return type(module).__name__, "other"


def _step(node: fx.Node, gm: fx.GraphModule) -> Step:
    if node.op == "call_module":
        label, kind = _describe(gm.get_submodule(str(node.target)))
    elif node.op == "call_function" and node.target in _ADDS:
        label, kind = "+", "add"
    elif node.op == "call_function" and node.target in _RELUS:
        label, kind = "ReLU", "act"
    else:
        label, kind = getattr(node.target, "__name__", str(node.target)), "other"
    return Step(node.name, label, kind)


def _source(node: fx.Node) -> fx.Node | None:
    args = [a for a in node.args if isinstance(a, fx.Node)]
    return args[0] if args else None


def _depth(node: fx.Node) -> int:
    """Number of operations between the input and ``node`` on its longest path."""
    depth = 0
    stack = [(node, 0)]
    seen: dict[fx.Node, int] = {}
    while stack:
        n, d = stack.pop()
        if seen.get(n, -1) >= d:
            continue
        seen[n] = d
        parents = [a for a in n.args if isinstance(a, fx.Node)]
        if not parents:
            depth = max(depth, d)
        stack += [(p, d + 1) for p in parents]
    return depth


def block_steps(block: nn.Module) -> tuple[list[Step], list[Step], int | None, int | None]:
    """Read a block's forward pass: ``(main, shortcut, fork, join)``.

    ``main`` is the operations from input to output along the residual branch
    (the input itself first, as a step named "x"); ``shortcut`` the operations
    on the other input of the addition (empty for an identity shortcut);
    ``fork`` the index in ``main`` where the shortcut leaves, ``join`` the
    index of the addition. Both are ``None`` when nothing is added back (a
    plain block).
    """
    gm = fx.GraphModule(block, _Tracer().trace(block))
    output = next(n for n in gm.graph.nodes if n.op == "output")
    chain: list[fx.Node] = []
    side: list[fx.Node] = []
    join_node = other = None
    node = _source(output)
    while node is not None:
        chain.append(node)
        if node.op == "placeholder":
            break
        parents = [a for a in node.args if isinstance(a, fx.Node)]
        if node.op == "call_function" and node.target in _ADDS and len(parents) == 2:
            if join_node is not None:
                raise ParameterError("draw_block draws blocks with one addition; got two")
            join_node = node
            main_parent, other = sorted(parents, key=_depth, reverse=True)
            node = main_parent
        else:
            node = parents[0] if parents else None
    chain.reverse()
    main_names = [n.name for n in chain]
    fork = join = None
    if join_node is not None:
        join = main_names.index(join_node.name)
        # Walk the shortcut back from the addition until it meets the main path.
        side_node: fx.Node | None = other
        while side_node is not None and side_node.name not in main_names:
            side.append(side_node)
            side_node = _source(side_node)
        side.reverse()
        fork = main_names.index(side_node.name) if side_node is not None else 0
    main = [Step("x", "input x", "other")] + [_step(n, gm) for n in chain[1:]]
    return main, [_step(n, gm) for n in side], fork, join


def _box(
    ax: Axes, x: float, y: float, w: float, h: float, text: str, kind: str,
    size: float = 10.5,
) -> None:
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
            facecolor=COLORS.get(kind, "white"), edgecolor="#444444", linewidth=1,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=max(MIN_FONT_PT, size))


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], **kw: object) -> None:
    ax.annotate(
        "", xy=end, xytext=start,
        arrowprops={"arrowstyle": "-|>", "color": "#333333", "lw": 1.2, "shrinkA": 0,
                    "shrinkB": 0, **kw},
    )


def draw_block(block: nn.Module, ax: Axes, title: str | None = None) -> None:
    """Draw ``block``'s forward pass on ``ax`` (see :func:`block_steps`)."""
    main, side, fork, join = block_steps(block)
    step_y = 0.8
    w, h = 2.35, 0.5
    ys = [-i * step_y for i in range(len(main) + 1)]
    for i, step in enumerate(main):
        width = 0.5 if step.kind == "add" else w
        _box(ax, 0, ys[i], width, h if step.kind != "add" else 0.45, step.label, step.kind)
        if i:
            top = ys[i - 1] - h / 2
            bottom = ys[i] + (0.225 if step.kind == "add" else h / 2)
            _arrow(ax, (0, top), (0, bottom))
    _box(ax, 0, ys[len(main)], w, h, "output", "other")
    prev_half = 0.225 if main[-1].kind == "add" else h / 2
    _arrow(ax, (0, ys[len(main) - 1] - prev_half), (0, ys[len(main)] + h / 2))
    x_side = 2.8
    if fork is None or join is None:
        ax.text(x_side, (ys[0] + ys[len(main)]) / 2, "no shortcut", ha="center",
                va="center", fontsize=max(MIN_FONT_PT, 10.5), color="#aa0000")
    else:
        y_fork = ys[fork] - (h / 2 if fork else h / 2) - 0.12
        y_join = ys[join]
        ax.plot([0, x_side], [y_fork, y_fork], color="#333333", lw=1.2)
        if side:
            span = (y_fork - y_join) / (len(side) + 1)
            prev = y_fork
            for k, step in enumerate(side, start=1):
                y = y_fork - k * span
                bh = h * (1 + 0.6 * step.label.count("\n"))
                _arrow(ax, (x_side, prev), (x_side, y + bh / 2))
                _box(ax, x_side, y, 2.2, bh, step.label, "shortcut")
                prev = y - bh / 2
            ax.plot([x_side, x_side], [prev, y_join], color="#333333", lw=1.2)
        else:
            ax.plot([x_side, x_side], [y_fork, y_join], color="#333333", lw=1.2)
            ax.text(x_side + 0.12, (y_fork + y_join) / 2, "identity", ha="left",
                    va="center", fontsize=max(MIN_FONT_PT, 10.5), rotation=90)
        _arrow(ax, (x_side, y_join), (0.25, y_join))
    ax.set_xlim(-1.25, x_side + 1.2)
    ax.set_ylim(ys[len(main)] - 0.5, ys[0] + 0.5)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=12)


def draw_blocks(blocks: Sequence[tuple[str, nn.Module]], *, width: float = 7.0) -> Figure:
    """Draw several blocks side by side, each with its title; returns the figure."""
    import matplotlib.pyplot as plt

    if not blocks:
        raise ParameterError("draw_blocks needs at least one (title, block) pair")
    longest = max(len(block_steps(b)[0]) for _, b in blocks)
    width = min(width, MAX_WIDTH_IN)
    fig, axes = plt.subplots(
        1, len(blocks), figsize=(width, 0.62 * (longest + 1) + 0.6), squeeze=False
    )
    for ax, (title, block) in zip(axes[0], blocks):
        draw_block(block, ax, title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ networks


@dataclass(frozen=True)
class Stage:
    """One box of a network layout: a group of top-level modules and what it outputs."""

    name: str
    lines: tuple[str, ...]
    channels: int
    side: tuple[int, int]  # height, width of the output feature map (1x1 after pooling)


def _block_word(block: nn.Module) -> str:
    name = type(block).__name__
    return {"BasicBlock": "basic", "CifarBlock": "basic", "Bottleneck": "bottleneck",
            "PreActBlock": "pre-act"}.get(name, name)


def network_stages(model: nn.Module, input_size: Sequence[int]) -> list[Stage]:
    """Group ``model``'s top-level modules into input, stem, stages and head.

    Output shapes come from :func:`resnet_nb.models.feature_map_shapes` (forward
    hooks on a zero input of ``input_size``, batch included). Top-level
    ``nn.Sequential`` children whose name starts with ``layer`` are stages;
    the children before the first one form the stem, those after it the head.
    """
    shapes = dict(feature_map_shapes(model, input_size))  # in the order they ran
    modules = dict(model.named_children())
    children = [(n, modules[n]) for n in shapes]
    is_stage = [n.startswith("layer") and isinstance(m, nn.Sequential) for n, m in children]
    if not any(is_stage):
        raise ParameterError(
            f"{type(model).__name__} has no top-level stages named layer1, layer2, ...: "
            "network_stages reads ResNet-style models"
        )
    first = is_stage.index(True)
    last = len(is_stage) - 1 - is_stage[::-1].index(True)
    _, c, hgt, wid = (1, *input_size[-3:]) if len(input_size) == 4 else (1, 1, 1, 1)
    stages = [Stage("input", ("input", f"{c} ch", f"{hgt}x{wid}"), c, (hgt, wid))]
    if first:
        stages.append(_stem_stage(children[:first], shapes))
    stages += [_body_stage(name, m, shapes) for name, m in children[first : last + 1]
               if isinstance(m, nn.Sequential)]
    if children[last + 1 :]:
        stages.append(_head_stage(children[last + 1 :], shapes))
    return stages


def _channels_and_side(shape: tuple[int, ...]) -> tuple[int, tuple[int, int]]:
    return (shape[1], (shape[2], shape[3])) if len(shape) == 4 else (shape[1], (1, 1))


def _stem_stage(stem: list[tuple[str, nn.Module]], shapes: dict[str, tuple[int, ...]]) -> Stage:
    short = []
    for _, m in stem:
        label, kind = _describe(m)
        if isinstance(m, nn.MaxPool2d):
            short.append(f"max pool /{m.stride}")
        elif kind in ("conv", "pool"):
            # "7x7 conv, 64, /2" -> "7x7 conv /2": the channels get their own line
            parts = [p.strip() for p in label.split(",")]
            short.append(" ".join(p for p in parts if not p.isdigit()))
    ch, side = _channels_and_side(shapes[stem[-1][0]])
    return Stage("stem", ("stem", *short, f"{ch} ch", f"{side[0]}x{side[1]}"), ch, side)


def _body_stage(name: str, stage: nn.Sequential, shapes: dict[str, tuple[int, ...]]) -> Stage:
    ch, side = _channels_and_side(shapes[name])
    words = {_block_word(b) for b in stage}
    word = words.pop() if len(words) == 1 else "mixed"
    lines = (name, f"{len(stage)} x {word}", f"{ch} ch", f"{side[0]}x{side[1]}")
    return Stage(name, lines, ch, side)


def _head_stage(head: list[tuple[str, nn.Module]], shapes: dict[str, tuple[int, ...]]) -> Stage:
    ch, side = _channels_and_side(shapes[head[-1][0]])
    fc = [m for _, m in head if isinstance(m, nn.Linear)]
    lines = ["head", "avg pool"] + [f"fc, {m.out_features}" for m in fc]
    return Stage("head", tuple(lines), ch, side)


def draw_layout(
    model: nn.Module, input_size: Sequence[int], ax: Axes, title: str | None = None
) -> list[Stage]:
    """Draw ``model`` as a row of boxes (see :func:`network_stages`) on ``ax``.

    Each box's height grows with the side of the feature map it outputs, so a
    stem that shrinks the image shows as a drop. Returns the stages drawn.
    """
    stages = network_stages(model, input_size)
    full = max(s.side[0] for s in stages)
    w, gap = 1.15, 0.22
    for i, stage in enumerate(stages):
        x = i * (w + gap)
        h = 1.05 + 0.9 * stage.side[0] / full
        kind = {"input": "other", "stem": "conv", "head": "pool"}.get(stage.name, "norm")
        _box(ax, x, 0, w, h, "\n".join(stage.lines), kind, size=MIN_FONT_PT)
        if i:
            _arrow(ax, (x - gap - w / 2 + 0.02, 0), (x - w / 2 - 0.02, 0))
    ax.set_xlim(-w / 2 - 0.1, (len(stages) - 1) * (w + gap) + w / 2 + 0.1)
    ax.set_ylim(-1.1, 1.1)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=12, loc="left")
    return stages


def draw_layouts(
    models: Sequence[tuple[str, nn.Module, Sequence[int]]], *, width: float = MAX_WIDTH_IN
) -> Figure:
    """Draw several network layouts, one row each: ``(title, model, input_size)``."""
    import matplotlib.pyplot as plt

    if not models:
        raise ParameterError("draw_layouts needs at least one (title, model, input_size)")
    fig, axes = plt.subplots(
        len(models), 1, figsize=(min(width, MAX_WIDTH_IN), 2.35 * len(models)), squeeze=False
    )
    for ax, (title, model, size) in zip(axes[:, 0], models):
        draw_layout(model, size, ax, title)
    fig.tight_layout()
    return fig


def figure_texts(fig: Figure) -> list[str]:
    """Every text drawn in ``fig`` (titles, boxes, labels), for tests and alt text."""
    from matplotlib.text import Text

    hidden = {
        id(t)
        for ax in fig.axes
        if not ax.axison
        for t in (*ax.get_xticklabels(), *ax.get_yticklabels(),
                  *ax.xaxis.get_ticklabels(minor=True), *ax.yaxis.get_ticklabels(minor=True))
    }
    return [t.get_text() for t in fig.findobj(Text) if t.get_text() and id(t) not in hidden]
