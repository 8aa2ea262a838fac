"""The notebook's own pipeline, the baseline every benchmark here compares against.

    python benchmarks/notebook.py            # the whole notebook run: data, 7 epochs, test

torchvision's FashionMNIST + ToTensor + Normalize((0.5,), (0.5,)) + DataLoader(batch_size=64,
shuffle=True), the 784-256-128-64-10 ReLU/LogSoftmax MLP, NLLLoss, Adam at lr 0.003, exactly as
the notebook did it. torchvision wants the raw files under ROOT/FashionMNIST/raw/; `make_root`
decompresses the Debian package's .gz files there once (torchvision's own step on download).
"""

import gzip
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def make_root(root=None) -> Path:
    """A torchvision root holding FashionMNIST/raw/<the four raw IDX files>."""
    root = Path(root or Path(tempfile.gettempdir()) / "quicknets-bench-torchvision")
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if not (raw / name).is_file():
            with gzip.open(DEBIAN / f"{name}.gz", "rb") as src, open(raw / f".{name}", "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(raw / f".{name}", raw / name)
    return root


def loaders(root):
    """The notebook's trainloader and testloader."""
    import torch
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    train = datasets.FashionMNIST(root, train=True, download=False, transform=transform)
    test = datasets.FashionMNIST(root, train=False, download=False, transform=transform)
    return (
        torch.utils.data.DataLoader(train, batch_size=64, shuffle=True),
        torch.utils.data.DataLoader(test, batch_size=64, shuffle=True),
    )


def model_and_optimizer():
    """The notebook's network (written out as it did), NLLLoss and Adam(lr=0.003)."""
    import torch
    from torch import nn

    model = nn.Sequential(
        nn.Linear(784, 256),
        nn.ReLU(),
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
        nn.LogSoftmax(dim=1),
    )
    return model, nn.NLLLoss(), torch.optim.Adam(model.parameters(), lr=0.003)


def train_epoch(model, criterion, optimizer, trainloader) -> float:
    """The notebook's loop: flatten, forward, loss, backward, step; returns the loss sum."""
    running_loss = 0.0
    for images, labels in trainloader:
        images = images.view(images.shape[0], -1)
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
    return running_loss


def test_accuracy(model, testloader) -> float:
    import torch

    correct = total = 0
    with torch.no_grad():
        for images, labels in testloader:
            log_ps = model(images.view(images.shape[0], -1))
            correct += (log_ps.argmax(1) == labels).sum().item()
            total += len(labels)
    return correct / total


def main(epochs: int = 7) -> None:
    start = time.perf_counter()
    import torch

    threads = int(os.environ.get("BENCH_THREADS", "0"))
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    trainloader, testloader = loaders(make_root())
    model, criterion, optimizer = model_and_optimizer()
    for epoch in range(epochs):
        loss = train_epoch(model, criterion, optimizer, trainloader)
        print(f"epoch {epoch + 1}/{epochs}  training loss: {loss:.1f}", flush=True)
    print(
        f"test accuracy: {test_accuracy(model, testloader):.4f}  "
        f"seconds: {time.perf_counter() - start:.1f}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
