"""Training throughput: the usual PIL/DataLoader loop vs the resnet_nb engine.

Both train the same model (ResNet-20 by default) with the same batch size on the
same machine, in one run, with the engine's own training step
(:class:`resnet_nb.train.TrainStep`); only what feeds it differs:

* naive: the usual tutorial loop - a torchvision ``DataLoader`` whose workers
  turn each image into a PIL image and apply ``RandomCrop(32, padding=4)``,
  ``RandomHorizontalFlip``, ``ToTensor`` and ``Normalize``; fp32, contiguous
  memory format, SGD;
* engine: :func:`resnet_nb.train.fit` as shipped, stopped by ``max_steps`` -
  data resident on the device as uint8, batched crop/flip on the device, fused
  normalisation, channels_last and the precision ``auto`` picks (bf16 autocast
  where it is fast). A callback times the steps after the warm-up.

How close to the hardware: the engine's achieved FLOP/s (3 x the forward pass's
FLOPs per training image: forward, and a backward of about twice its cost) is
printed next to this machine's fp32 matrix-multiply peak, a 2048 x 2048
``torch.mm`` timed in the same run (best of 10).

The two loops are measured in alternating rounds (naive, engine, naive, ...) and
the median of each is reported, so that other load on a shared machine hits both
alike. Prints images/s of each round, the medians and their ratio.

On a machine shared with other work, wall-clock images/s also measures how much
of the machine each loop managed to take (the naive loop runs 2 extra worker
processes, which the scheduler counts as 2 more claims on the cores). So each
round also reports images per CPU-second: all threads of this process plus the
DataLoader workers (their share for the timed batches). For the engine that
figure covers both epochs, warm-up included, so it is if anything low. Uses the CIFAR-10 copy that
:func:`resnet_nb.data.load_cifar10` finds (set ``RESNET_NB_DATA``), else synthetic
images of the same shape (and says so).

    python benchmarks/throughput.py [--model resnet20] [--batch-size 128] [--steps 40]
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import time

import torch
from torch.utils.data import DataLoader, Dataset

from resnet_nb.data import ImageData, channel_stats, load_cifar10
from resnet_nb.errors import DataNotFoundError
from resnet_nb.models import build_model, count_flops
from resnet_nb.report import device_name
from resnet_nb.train import (
    Callback,
    TrainConfig,
    TrainStep,
    fit,
    resolve_device,
    synthetic_data,
)


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


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def naive_images_per_s(
    data: ImageData, *, model_name: str, batch_size: int, steps: int, warmup: int,
    workers: int, device: torch.device,
) -> tuple[float, float]:
    """(images/s, images per CPU-second) of the PIL/DataLoader/fp32 loop over ``steps``
    timed batches."""
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
        num_workers=workers, drop_last=True,
    )
    torch.manual_seed(0)
    model = build_model(model_name, num_classes=len(data.classes)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    step = TrainStep(model, optimizer)
    model.train()
    done, start, cpu_start = 0, 0.0, 0.0
    children_before = _children_cpu_s()
    while done < warmup + steps:
        for x, y in loader:
            if done == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                cpu_start = time.process_time()
            loss, _ = step(x.to(device), y.to(device))
            done += 1
            if done == warmup + steps:
                break
    loss.item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    main_cpu = time.process_time() - cpu_start
    del loader
    gc.collect()  # shuts the workers down, so their CPU time is counted
    produced = min(len(data) // batch_size, warmup + steps + 2 * workers)  # 2 prefetched each
    worker_cpu = (_children_cpu_s() - children_before) * steps / produced
    images = steps * batch_size
    return images / wall, images / (main_cpu + worker_cpu)


class StepTimer(Callback):
    """Times the steps after the first ``warmup`` ones (waiting for the device)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = self.end = 0.0

    def _now(self, run) -> float:  # noqa: ANN001
        if run.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_end(self, run) -> None:  # noqa: ANN001
        if run.state.step + 1 == self.warmup:
            self.start = self._now(run)
        if run.state.step + 1 == run.total_steps:
            self.end = self._now(run)


def engine_images_per_s(
    data: ImageData, *, model_name: str, batch_size: int, steps: int, warmup: int,
    device: str, precision: str, compile: bool,
) -> tuple[float, float, str]:
    """(images/s over ``steps`` timed steps of :func:`fit` after ``warmup`` untimed ones,
    images per CPU-second over all of them, the precision used)."""
    config = TrainConfig(
        model=model_name, epochs=1_000, max_steps=warmup + steps, batch_size=batch_size,
        device=device, precision=precision, channels_last=True, compile=compile,
    )
    timer = StepTimer(warmup)
    cpu_start = time.process_time()
    result = fit(config, train=data, val=None, test=None, callbacks=[timer], progress=False)
    cpu = time.process_time() - cpu_start
    rate = steps * batch_size / (timer.end - timer.start)
    return rate, (warmup + steps) * batch_size / cpu, result.precision


def matmul_peak_flops(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """This machine's fp32 matrix-multiply rate: ``size`` x ``size`` ``torch.mm``, best of
    ``repeats`` (FLOP/s, 2 per multiply-add)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    best = float("inf")
    for _ in range(repeats + 1):  # the first is a warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best


def main() -> None:
    """Parse arguments, run both loops, print the figures and the ratio."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=40, help="timed batches per loop")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches of the naive loop")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the naive loop")
    p.add_argument("--rounds", type=int, default=3, help="alternating measurements of each loop")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", help="the engine's precision")
    p.add_argument("--compile", action="store_true", help="torch.compile in the engine")
    args = p.parse_args()

    device = resolve_device(args.device)
    try:
        data = load_cifar10("train", download=False)
    except DataNotFoundError as exc:
        print(f"CIFAR-10 not found ({exc}); using synthetic 32x32 images")
        data = synthetic_data(args.batch_size * (args.steps + args.warmup) * 2)
    n = min(len(data), args.batch_size * (args.steps + args.warmup) * 2)
    data = data.subset(torch.arange(n))
    print(f"device: {device_name(device)}; torch {torch.__version__}; "
          f"OMP threads {torch.get_num_threads()}; cpus {os.cpu_count()}")
    print(f"data: {data.source}; model {args.model}; batch {args.batch_size}; "
          f"{args.steps} timed batches per loop")
    naive_runs: list[tuple[float, float]] = []
    engine_runs: list[tuple[float, float]] = []
    precision = args.precision
    for r in range(args.rounds):
        naive_runs.append(naive_images_per_s(
            data, model_name=args.model, batch_size=args.batch_size, steps=args.steps,
            warmup=args.warmup, workers=args.workers, device=device,
        ))
        rate, per_cpu, precision = engine_images_per_s(
            data, model_name=args.model, batch_size=args.batch_size, steps=args.steps,
            warmup=args.warmup, device=str(device), precision=args.precision,
            compile=args.compile,
        )
        engine_runs.append((rate, per_cpu))
        print(f"round {r + 1}: naive {naive_runs[-1][0]:.1f} img/s "
              f"({naive_runs[-1][1]:.1f} per CPU-s), engine {rate:.1f} img/s "
              f"({per_cpu:.1f} per CPU-s)", flush=True)
    naive = statistics.median(x[0] for x in naive_runs)
    engine = statistics.median(x[0] for x in engine_runs)
    naive_cpu = statistics.median(x[1] for x in naive_runs)
    engine_cpu = statistics.median(x[1] for x in engine_runs)
    print(f"naive loop (PIL transforms, DataLoader x{args.workers} workers, fp32), median: "
          f"{naive:8.1f} img/s, {naive_cpu:8.1f} img per CPU-s")
    print(f"engine (on-device uint8 + tensor aug, channels_last, {precision}"
          f"{', compiled' if args.compile else ''}), median: {engine:8.1f} img/s, "
          f"{engine_cpu:8.1f} img per CPU-s")
    print(f"ratio engine / naive: {engine / naive:.2f}x wall-clock, "
          f"{engine_cpu / naive_cpu:.2f}x per CPU-second")
    model = build_model(args.model, num_classes=len(data.classes))
    per_image = 3 * count_flops(model, (1, 3, 32, 32))  # forward + backward (about 2x)
    achieved = engine * per_image
    peak = matmul_peak_flops(device)
    print(f"engine: {per_image / 1e6:.0f} MFLOP per training image x {engine:.0f} img/s = "
          f"{achieved / 1e9:.1f} GFLOP/s; fp32 torch.mm peak (2048x2048, best of 10): "
          f"{peak / 1e9:.1f} GFLOP/s; engine / peak: {achieved / peak:.0%}")


if __name__ == "__main__":
    main()
