"""resnet_nb: ResNet from the residual block up.

The package behind the resnet-nb book. Chapters build teaching versions of each
piece step by step; this package holds the versions they import and check against.

Modules
-------
models   residual blocks, torchvision-compatible ResNets, the paper's CIFAR ResNets
data     dataset discovery (download / offline copy), cached uint8 tensors, splits
params   validation of chapter and command-line parameters
checks   checks that a residual block computes F(x) + shortcut(x) (and fail if not)
diagrams block and network diagrams drawn from the nn.Module
viz      the book's figure style (fonts, SVG), applied explicitly by the chapters
report   provenance, portable paths and recorded runs
train    the training engine (loop, mixed precision, schedules, checkpoints)
finetune weight sources, freezing policies, parameter groups, transfer runs
inference  predictions, TorchScript/ONNX export, Grad-CAM
"""

from typing import Any

__all__ = ["predict"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `python -m resnet_nb.train` does not import
    # resnet_nb.train twice (once through the package, once as __main__).
    if name == "predict":
        from resnet_nb.inference import predict

        return predict
    raise AttributeError(f"module 'resnet_nb' has no attribute {name!r}")

__version__ = "0.1.0"
