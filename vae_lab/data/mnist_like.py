"""MNIST and Fashion-MNIST: the four IDX files read into uint8 tensors; a seeded validation split of the 60k."""
from pathlib import Path

from vae_lab.checks import ConfigError
from vae_lab.data.base import TensorImageData, seeded_splits
from vae_lab.data.idx import read_idx

FILES = {
    ("train", "images"): "train-images-idx3-ubyte", ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte", ("test", "labels"): "t10k-labels-idx1-ubyte",
}


class MNISTLike(TensorImageData):
    """Looks in `data_dir/<name>/raw` (torchvision's layout), then `offline_dirs`, then downloads via torchvision.
    `val_size` of the training images (a count or a fraction) are held out as val, drawn with `split_seed`; the test
    files are the test split; `seed` draws binarize=static's binarisation."""

    name = ""
    offline_dirs: tuple = ()
    how_to_get = ""

    def __init__(self, data_dir="data", download=True, val_size=5000, split_seed=0, binarize="none", dequantize="none",
                 seed=0, device="cpu"):
        raw = Path(data_dir) / self.name / "raw"
        found = self._find(raw)
        if found is None and download:
            found = self._download(Path(data_dir), raw)
        if found is None:
            raise ConfigError(
                f"dataset: no {self.name} files in {raw} (looked for {', '.join(FILES.values())}, .gz or not); "
                f"put the four IDX files there{self.how_to_get}, or set dataset.download=true with internet access")
        arrays = {key: read_idx(path) for key, path in found.items()}
        for split in ("train", "test"):
            images, labels = arrays[split, "images"], arrays[split, "labels"]
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or 0 in images.shape:
                raise ConfigError(f"{found[split, 'images']}, {found[split, 'labels']}: need N images (N, H, W) and "
                                  f"N labels (N,), found {images.shape} and {labels.shape}; replace them")
        train_x, train_y = arrays["train", "images"], arrays["train", "labels"]
        held_out = seeded_splits(len(train_x), val_size, None, split_seed)  # the test split is the t10k files
        val, train = held_out["val"].numpy(), held_out["train"].numpy()
        images = {"train": train_x[train], "val": train_x[val], "test": arrays["test", "images"]}
        labels = {"train": train_y[train], "val": train_y[val], "test": arrays["test", "labels"]}
        super().__init__({k: v[:, None] for k, v in images.items()}, labels, binarize=binarize, dequantize=dequantize,
                         seed=seed, device=device)

    def _find(self, raw):
        for folder in (raw, *map(Path, self.offline_dirs)):
            found = {}
            for key, stem in FILES.items():
                path = next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)
                if path is None:
                    break
                found[key] = path
            else:
                return found
        return None

    def _download(self, root, raw):
        import torchvision

        try:
            getattr(torchvision.datasets, self.name)(str(root), train=True, download=True)
        except Exception as e:  # no network, proxy, disk full: reported below with the directory looked in
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError(f"dataset: no {self.name} files in {raw} and the download failed ({first}); "
                              f"put the four IDX files there{self.how_to_get}") from None
        return self._find(raw)


class MNIST(MNISTLike):
    name = "MNIST"


class FashionMNIST(MNISTLike):
    name = "FashionMNIST"
    offline_dirs = ("/usr/share/datasets/fashion-mnist",)
    how_to_get = " (or, on Debian/Ubuntu: apt-get install dataset-fashion-mnist)"
