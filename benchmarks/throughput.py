"""Training throughput: the seeds' naive loop vs the resnet_nb engine.

Both train the same model (ResNet-20 by default) with the same batch size on the
same machine, in one run:

* naive: the loop the seed repositories use - a torchvision ``DataLoader`` whose
  workers turn each image into a PIL image and apply ``RandomCrop(32, padding=4)``,
  ``RandomHorizontalFlip``, ``ToTensor`` and ``Normalize``; fp32, contiguous
  memory format, SGD;
* engine: :func:`resnet_nb.train.fit` as shipped - data resident on the device as
  uint8, batched crop/flip on the device, fused normalisation, channels_last and
  the precision ``auto`` picks (bf16 autocast where supported).

Prints images/s of each and the ratio. Uses the CIFAR-10 copy that
:func:`resnet_nb.data.load_cifar10` finds (set ``RESNET_NB_DATA``), else synthetic
images of the same shape (and says so).

    python benchmarks/throughput.py [--model resnet20] [--batch-size 128] [--steps 40]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from resnet_nb.data import ImageData, channel_stats, load_cifar10
from resnet_nb.models import build_model
from resnet_nb.report import device_name
from resnet_nb.train import TrainConfig, fit, resolve_device, synthetic_data


class PILDataset(Dataset):
    """uint8 CHW images served one at a time as PIL images through ``transform``."""

    def __init__(self, data: ImageData, transform: object) -> None:
        self.images = data.images.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = data.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def naive_images_per_s(
    data: ImageData, *, model_name: str, batch_size: int, steps: int, warmup: int,
    workers: int, device: torch.device,
) -> float:
    """images/s of the PIL/DataLoader/fp32 loop over ``steps`` timed batches."""
    import torchvision.transforms as T

    mean, std = channel_stats(data)
    transform = T.Compose([
        T.RandomCrop(32, padding=4),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])
    loader = DataLoader(
        PILDataset(data, transform), batch_size=batch_size, shuffle=True,
        num_workers=workers, drop_last=True, persistent_workers=workers > 0,
    )
    torch.manual_seed(0)
    model = build_model(model_name, num_classes=len(data.classes)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    criterion = nn.CrossEntropyLoss()
    model.train()
    done, start = 0, 0.0
    while done < warmup + steps:
        for x, y in loader:
            if done == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            x, y = x.to(device), y.to(device)
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == warmup + steps:
                break
    loss.item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def engine_images_per_s(
    data: ImageData, *, model_name: str, batch_size: int, steps: int, device: str,
    precision: str, compile: bool,
) -> tuple[float, str]:
    """images/s of the engine's second epoch of ``steps`` batches (the first warms up)."""
    config = TrainConfig(
        model=model_name, epochs=2, batch_size=batch_size, train_limit=steps * batch_size,
        device=device, precision=precision, channels_last=True, compile=compile,
    )
    result = fit(config, train=data, val=None, test=None, progress=False)
    return result.history[-1]["images_per_s"], result.precision


def main() -> None:
    """Parse arguments, run both loops, print the figures and the ratio."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=40, help="timed batches per loop")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches of the naive loop")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the naive loop")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", help="the engine's precision")
    p.add_argument("--compile", action="store_true", help="torch.compile in the engine")
    args = p.parse_args()

    device = resolve_device(args.device)
    try:
        data = load_cifar10("train", download=False)
    except FileNotFoundError as exc:
        print(f"CIFAR-10 not found ({exc}); using synthetic 32x32 images")
        data = synthetic_data(args.batch_size * (args.steps + args.warmup) * 2)
    n = min(len(data), args.batch_size * (args.steps + args.warmup) * 2)
    data = data.subset(torch.arange(n))
    print(f"device: {device_name(device)}; torch {torch.__version__}; "
          f"OMP threads {torch.get_num_threads()}; cpus {os.cpu_count()}")
    print(f"data: {data.source}; model {args.model}; batch {args.batch_size}; "
          f"{args.steps} timed batches per loop")
    naive = naive_images_per_s(
        data, model_name=args.model, batch_size=args.batch_size, steps=args.steps,
        warmup=args.warmup, workers=args.workers, device=device,
    )
    print(f"naive loop (PIL transforms, DataLoader x{args.workers} workers, fp32): "
          f"{naive:8.1f} img/s")
    engine, precision = engine_images_per_s(
        data, model_name=args.model, batch_size=args.batch_size, steps=args.steps,
        device=str(device), precision=args.precision, compile=args.compile,
    )
    print(f"engine (on-device uint8 + tensor aug, channels_last, {precision}"
          f"{', compiled' if args.compile else ''}): {engine:8.1f} img/s")
    print(f"ratio engine / naive: {engine / naive:.2f}x")


if __name__ == "__main__":
    main()
