"""resnet_nb.diagrams draws what the module computes, not a fixed picture."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from resnet_nb import diagrams, models, viz  # noqa: E402
from resnet_nb.diagrams import block_steps, draw_blocks, draw_layouts, figure_texts  # noqa: E402


@pytest.fixture(autouse=True)
def _style() -> None:
    with matplotlib.rc_context():
        viz.use_book_style(svg=False)
        yield
    plt.close("all")


class Plain(nn.Module):
    def __init__(self, planes: int) -> None:
        super().__init__()
        self.conv1 = models.conv3x3(planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = models.conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)

    def forward(self, x: Tensor) -> Tensor:
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        return nn.functional.relu(self.bn2(self.conv2(out)))


def test_block_width_comes_from_the_module() -> None:
    texts = figure_texts(draw_blocks([("a", models.BasicBlock(48, 48))]))
    assert "3x3 conv, 48" in texts and "3x3 conv, 64" not in texts
    texts = figure_texts(draw_blocks([("a", models.BasicBlock(64, 64))]))
    assert "3x3 conv, 64" in texts


def test_plain_block_has_no_shortcut() -> None:
    main, side, fork, join = block_steps(Plain(8))
    assert fork is None and join is None and not side
    assert "no shortcut" in figure_texts(draw_blocks([("plain", Plain(8))]))


def test_identity_and_projection_shortcuts() -> None:
    _, side, fork, join = block_steps(models.BasicBlock(8, 8))
    assert side == [] and fork == 0 and [s.label for s in block_steps(models.BasicBlock(8, 8))[0]][join] == "+"
    down = nn.Sequential(models.conv1x1(8, 16, 2), nn.BatchNorm2d(16))
    _, side, fork, _ = block_steps(models.BasicBlock(8, 16, 2, down))
    assert [s.label for s in side] == ["1x1 conv, 16, /2", "BN"] and fork == 0


def test_preact_shortcut_leaves_after_the_first_relu() -> None:
    block = models.PreActBlock(8, 16, 2, nn.Sequential(models.conv1x1(8, 16, 2)))
    main, side, fork, join = block_steps(block)
    assert [s.label for s in main[: fork + 1]] == ["input x", "BN", "ReLU"]
    assert main[-1].label == "+"  # nothing after the addition
    assert [s.label for s in side] == ["1x1 conv, 16, /2"]


def test_zero_pad_layout_is_shown() -> None:
    after = figure_texts(draw_blocks([("A", models.CifarBlock(16, 32, 2))]))
    split = figure_texts(draw_blocks([("A", models.CifarBlock(16, 32, 2, pad="split"))]))
    assert any("zeros after" in t for t in after) and any("zeros split" in t for t in split)


def test_layout_reads_stages_and_sizes() -> None:
    texts = figure_texts(
        draw_layouts([("r18", models.resnet18(), (1, 3, 224, 224)),
                      ("r20", models.cifar_resnet(20), (1, 3, 32, 32))])
    )
    joined = "\n".join(texts)
    for expected in ("56x56", "7x7", "512 ch", "fc, 1000", "3 x basic", "64 ch\n8x8", "max pool /2"):
        assert expected in joined, expected


def test_layout_follows_a_changed_model() -> None:
    model = models.resnet18(num_classes=7)
    down = nn.Sequential(models.conv1x1(256, 300, 2), nn.BatchNorm2d(300))
    model.layer4 = nn.Sequential(models.BasicBlock(256, 300, 2, down))
    model.fc = nn.Linear(300, 7)
    joined = "\n".join(figure_texts(draw_layouts([("x", model, (1, 3, 64, 64))])))
    assert "1 x basic\n300 ch\n2x2" in joined and "fc, 7" in joined


def test_stems_on_32x32() -> None:
    stages = diagrams.network_stages(models.resnet18(num_classes=10), (1, 3, 32, 32))
    assert [s.side for s in stages if s.name == "layer4"] == [(1, 1)]
    stages = diagrams.network_stages(models.resnet18(num_classes=10, stem="cifar"), (1, 3, 32, 32))
    assert [s.side for s in stages if s.name == "layer4"] == [(4, 4)]


def test_text_is_readable() -> None:
    """Every text of every diagram at least MIN_FONT_PT, and figures fit the column."""
    figs = [
        draw_blocks([("a", models.BasicBlock(8, 8)), ("b", models.PreActBlock(8, 8))]),
        draw_layouts([("r20", models.cifar_resnet(20), (1, 3, 32, 32))]),
    ]
    for fig in figs:
        shown = set(figure_texts(fig))
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text() in shown]
        assert sizes and min(sizes) >= viz.MIN_FONT_PT
        assert fig.get_size_inches()[0] <= viz.MAX_WIDTH_IN
    assert viz.MIN_FONT_PT * 96 / 72 >= 0.8 * viz.BODY_TEXT_PX


def test_style_is_not_applied_on_import() -> None:
    import subprocess
    import sys

    code = (
        "import matplotlib as mpl; before = dict(mpl.rcParams); "
        "import resnet_nb.viz, resnet_nb.diagrams; "
        "assert dict(mpl.rcParams) == before, 'rcParams changed at import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
