"""Training speed: images per second for each stage, beside inference in the same run.

Times forward + backward + optimiser step of the classifier and the U-Net of a training
configuration on random batches, the same with the trainer's MONAI augmentation of each
batch, and plain inference of the same networks as the reference, on the CPU (and CUDA
when present).

    python -m benchmarks.training [--config cpu-small] [--batches 5] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from monai.losses import DiceCELoss

from training.config import get_config
from training.stages import augmentation
from triage.models.networks import build_network


def rate(step, images: int, batches: int) -> float:
    step()  # warm-up
    started = time.perf_counter()
    for _ in range(batches):
        step()
    return images * batches / (time.perf_counter() - started)


def measure(device: torch.device, config_name: str, batches: int, batch_size: int) -> None:
    config = get_config(config_name)
    for name, settings in (("classifier", config.classifier), ("segmenter", config.segmenter)):
        stage(device, name, settings, batches, batch_size)


def augmented_rate(settings, name: str, images: int) -> float:
    """Images per second of the trainer's augmentation alone (on the CPU, one at a time)."""
    rows, cols = settings.network.input_size
    keys = ["image"] if name == "classifier" else ["image", "mask"]
    augment = augmentation(keys, crop=settings.crop)
    augment.set_random_state(0)
    rng = np.random.default_rng(0)
    image = rng.random((1, rows, cols), dtype=np.float32)
    mask = np.zeros((1, rows, cols), dtype=np.float32)
    mask[:, rows // 4 : rows // 2, cols // 8 : cols // 3] = 1
    sample = {"image": image, "mask": mask} if name != "classifier" else {"image": image}
    augment(dict(sample))
    started = time.perf_counter()
    for _ in range(images):
        augment(dict(sample))
    return images / (time.perf_counter() - started)


def stage(device: torch.device, name: str, settings, batches: int, batch_size: int) -> None:
    spec = settings.network
    size = settings.crop or spec.input_size
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
    augmented = augmented_rate(settings, name, batch_size * batches)
    # Augmentation runs in the training loop's thread, so its time adds to the step's.
    overall = 1.0 / (1.0 / trained + 1.0 / augmented)
    print(
        f"{device.type:5s} {name:10s} at {size[0]}x{size[1]}: training "
        f"{trained:7.1f} images/s ({overall:7.1f} with augmentation), inference "
        f"{inferred:7.1f} images/s (training costs {inferred / trained:.1f}x inference, "
        f"{inferred / overall:.1f}x with augmentation)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="cpu-small", help="training configuration")
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if torch.cuda.is_available():
        measure(torch.device("cuda"), args.config, args.batches * 4, args.batch_size)
    if args.config == "cpu-small" or not torch.cuda.is_available():
        measure(torch.device("cpu"), args.config, args.batches, args.batch_size)


if __name__ == "__main__":
    main()
