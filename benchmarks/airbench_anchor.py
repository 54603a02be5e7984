"""The anchor: airbench94 on this book's CIFAR-10 copy, on the same GPU as our runs.

airbench94 (Keller Jordan, public repository ``KellerJordan/cifar10-airbench``) is
the fastest published CIFAR-10 trainer: about 94% test accuracy in a few seconds
on an A100. Timed here on the data the book uses, it says what is reachable on
this copy and this GPU, and ``benchmarks/time_to_accuracy.py --anchor`` compares
our runs with it. Its code is not part of this project: fetch the public script
(``airbench94.py`` from the repository) and pass its path.

    # any machine: write the data in the format the script reads
    python benchmarks/airbench_anchor.py prepare --out anchor
    # a CUDA GPU: run the script there, parse its log, write anchor/anchor.json
    python benchmarks/airbench_anchor.py run --script airbench94.py --out anchor

``prepare`` writes ``<out>/cifar10/train.pt`` and ``test.pt``: dicts with
``images`` (uint8 ``[N, 32, 32, 3]``), ``labels`` (int64) and ``classes``, from
``resnet_nb.data.load_cifar10`` (all 50,000 training images: the script has no
validation split). ``run`` starts the script in ``<out>`` (it looks for
``cifar10/`` in its working folder), keeps its output in ``airbench94.log`` and
records each run's test accuracy (with its test-time augmentation) and its own
timed seconds (training and evaluation, data loading excluded).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from resnet_nb.data import load_cifar10
from resnet_nb.errors import ResnetNbError
from resnet_nb.report import display_path, portable_text
from resnet_nb.runs import sha256_file
from resnet_nb.state import atomic_json, atomic_save

LOG = "airbench94.log"
RESULT = "anchor.json"


def prepare(out: Path) -> list[Path]:
    """Write the CIFAR-10 splits where airbench94 reads them; return the files."""
    folder = out / "cifar10"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for split in ("train", "test"):
        data = load_cifar10(split)
        record = {
            "images": data.images.permute(0, 2, 3, 1).contiguous(),  # NHWC, as torchvision's
            "labels": data.labels.to(torch.int64),
            "classes": list(data.classes),
        }
        atomic_save(record, folder / f"{split}.pt")
        files.append(folder / f"{split}.pt")
        print(f"{split}: {len(data):,} images from {portable_text(data.source)} -> "
              f"{display_path((folder / f'{split}.pt').absolute())}")
    return files


_ROW = re.compile(r"^\|(.*)\|\s*$")


def parse_log(text: str) -> list[dict[str, float]]:
    """Each finished run of the script's log: its TTA test accuracy and timed seconds.

    The script prints one ``|``-separated row per epoch, with the columns
    run, epoch, train_loss, val_loss, train_acc, val_acc, tta_val_acc and
    total_time_seconds; a run's last row has ``eval`` as its epoch.
    """
    runs = []
    for line in text.splitlines():
        m = _ROW.match(line.strip())
        if not m:
            continue
        cells = [c.strip() for c in m.group(1).split("|")]
        if len(cells) == 8 and cells[1] == "eval":
            runs.append({"accuracy": float(cells[6]), "seconds": float(cells[7])})
    return runs


def run(script: Path, out: Path) -> dict[str, object]:
    """Run airbench94 in ``out`` on this machine's GPU; write and return the summary."""
    if not torch.cuda.is_available():
        raise ResnetNbError("airbench94 needs a CUDA GPU and none is available here; run "
                            "`prepare` here and `run` on the GPU machine")
    if not script.is_file():
        raise ResnetNbError(f"no script at {script}: fetch airbench94.py from the public "
                            "repository KellerJordan/cifar10-airbench and pass its path")
    if not (out / "cifar10" / "train.pt").is_file():
        raise ResnetNbError(f"{out}/cifar10/train.pt is missing: run "
                            f"`python benchmarks/airbench_anchor.py prepare --out {out}` first")
    with open(out / LOG, "w") as log:
        proc = subprocess.run([sys.executable, str(script.absolute())], cwd=out,
                              stdout=log, stderr=subprocess.STDOUT, check=False)
    runs = parse_log((out / LOG).read_text())
    if proc.returncode != 0 or not runs:
        raise ResnetNbError(f"airbench94 exited with code {proc.returncode} after {len(runs)} "
                            f"finished run(s); see {out / LOG}")
    accs = [r["accuracy"] for r in runs]
    secs = [r["seconds"] for r in runs]
    summary = {
        "script": script.name,
        "script_sha256": sha256_file(script),
        "data_sha256": {s: sha256_file(out / "cifar10" / f"{s}.pt") for s in ("train", "test")},
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "runs": len(runs),
        "accuracy_mean": statistics.fmean(accs),
        "accuracy_sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "seconds_median": statistics.median(secs),
        "per_run": runs,
    }
    atomic_json(summary, out / RESULT)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("prepare", "run"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--out", type=Path, default=Path("anchor"), help="working folder")
        if name == "run":
            cmd.add_argument("--script", type=Path, required=True, help="path of airbench94.py")
    args = p.parse_args(argv)
    try:
        if args.command == "prepare":
            prepare(args.out)
        else:
            s = run(args.script, args.out)
            print(f"airbench94 on {s['gpu']}: {s['accuracy_mean']:.2%} +- "
                  f"{s['accuracy_sd']:.2%} test accuracy over {s['runs']} runs, median "
                  f"{s['seconds_median']:.2f} s per run -> {args.out / RESULT}")
    except (ResnetNbError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
