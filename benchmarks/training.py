"""Training speed: images per second for each stage, beside inference in the same run.

Times forward + backward + optimiser step of the classifier and the U-Net of the default
configuration on random batches, and plain inference of the same networks as the
reference, on the CPU (and CUDA when present).

    python -m benchmarks.training [--batches 5] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import time

import torch
from monai.losses import DiceCELoss

from training.train import QuickConfig
from triage.models.networks import build_network


def rate(step, images: int, batches: int) -> float:
    step()  # warm-up
    started = time.perf_counter()
    for _ in range(batches):
        step()
    return images * batches / (time.perf_counter() - started)


def measure(device: torch.device, batches: int, batch_size: int) -> None:
    config = QuickConfig()
    stage(
        device, "classifier", config.classifier, config.classifier.input_size, batches, batch_size
    )
    stage(device, "segmenter", config.segmenter, config.segmenter_crop, batches, batch_size)


def stage(device: torch.device, name: str, spec, size, batches: int, batch_size: int) -> None:
    net = build_network(spec).to(device)
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.rand(batch_size, 1, *size, device=device)
    if name == "classifier":
        target = torch.randint(0, 2, (batch_size, 1), device=device).float()
        loss_fn = torch.nn.BCEWithLogitsLoss()
    else:
        target = (torch.rand(batch_size, 1, *size, device=device) > 0.9).float()
        loss_fn = DiceCELoss(sigmoid=True, batch=True)

    def train_step() -> None:
        net.train()
        loss = loss_fn(net(x).reshape(target.shape), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    def infer_step() -> None:
        net.eval()
        with torch.inference_mode():
            net(x)

    trained = rate(train_step, batch_size, batches)
    inferred = rate(infer_step, batch_size, batches)
    print(
        f"{device.type:5s} {name:10s} at {size[0]}x{size[1]}: training "
        f"{trained:7.1f} images/s, inference {inferred:7.1f} images/s "
        f"(training costs {inferred / trained:.1f}x inference)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    measure(torch.device("cpu"), args.batches, args.batch_size)
    if torch.cuda.is_available():
        measure(torch.device("cuda"), args.batches * 4, args.batch_size)


if __name__ == "__main__":
    main()
