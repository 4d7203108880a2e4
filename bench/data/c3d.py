"""C3D video features of ActivityNet, in either of the two layouts found in the wild, and their resampling.

Layouts (``shared/research/sil-original.md`` §2.2):

* single file ``sub_activitynet_v1-3.c3d.hdf5`` (the ActivityNet / densevid release): one group per video,
  ``/<v_id>/c3d_features``, ``[T, 500]`` PCA-reduced C3D (often float64);
* per-video files ``<dir>/<v_id>.h5`` with dataset ``feature`` ``[T, 500]``, which is what SIL and VGCL read.

:func:`open_features` takes the hdf5 file, a directory holding it, or a directory of per-video files, and
returns a :class:`FeatureStore` that hides the difference. Every array comes back as float32 ``[T, D]``
after checking that it is 2-D, non-empty, of the expected width and finite; any breach is a :class:`DataError`
naming the file and the video, because a NaN in one video otherwise surfaces epochs later as a NaN loss.

:func:`resample_to_clips` is 2D-TAN's ``average_to_fixed_length``, which SIL's collate uses with n = 256.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import h5py
import numpy as np
import torch

from bench.data.errors import DataError

SINGLE_FILE = "sub_activitynet_v1-3.c3d.hdf5"
SINGLE_KEY = "c3d_features"
PER_VIDEO_KEY = "feature"
C3D_DIM = 500


class FeatureStore:
    """Read-only access to per-video features: ``videos``, ``video in store``, ``get(video)``.

    The single-file layout keeps one h5py handle open (close with :meth:`close` or a ``with`` block); the
    per-video layout opens a file per :meth:`get`.
    """

    def __init__(self, path: Path, layout: str, dim: int | None = C3D_DIM) -> None:
        self.path, self.layout, self.dim = path, layout, dim
        self._h5: h5py.File | None = None
        if layout == "single":
            self._h5 = _open_h5(path)
            self._videos = sorted(k for k in self._h5 if isinstance(self._h5[k], h5py.Group))
        else:
            self._videos = sorted(p.stem for p in path.glob("*.h5"))
        self._video_set = frozenset(self._videos)

    @property
    def videos(self) -> list[str]:
        """Every video id in the store, sorted."""
        return list(self._videos)

    def __contains__(self, video: object) -> bool:
        return video in self._video_set

    def __len__(self) -> int:
        return len(self._videos)

    def where(self, video: str) -> str:
        """The file (and key) that holds, or would hold, ``video``: used in every message."""
        if self.layout == "single":
            return f"{self.path} [{video}/{SINGLE_KEY}]"
        return f"{self.path / (video + '.h5')} [{PER_VIDEO_KEY}]"

    def get(self, video: str) -> torch.Tensor:
        """The features of ``video`` as float32 ``[T, D]``; absent, malformed or non-finite is a DataError."""
        if video not in self._video_set:
            raise DataError(
                self.where(video),
                f"video {video} is absent from the features ({len(self)} videos present)",
                "extract or download its C3D features, or drop the video from the annotations",
            )
        if self.layout == "single":
            assert self._h5 is not None
            group = self._h5[video]
            if SINGLE_KEY not in group:
                raise DataError(self.where(video), f"group has no '{SINGLE_KEY}' dataset", "restore the file")
            arr = _read(group[SINGLE_KEY], self.where(video))
        else:
            with _open_h5(self.path / f"{video}.h5") as f:
                if PER_VIDEO_KEY not in f:
                    raise DataError(
                        self.where(video),
                        f"file has no '{PER_VIDEO_KEY}' dataset (keys: {', '.join(f.keys()) or 'none'})",
                        f"write the [T, {self.dim or 'D'}] array under the key '{PER_VIDEO_KEY}'",
                    )
                arr = _read(f[PER_VIDEO_KEY], self.where(video))
        return self._validate(arr, video)

    def _validate(self, arr: np.ndarray, video: str) -> torch.Tensor:
        where = self.where(video)
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise DataError(where, f"shape {tuple(arr.shape)} is not [T, D] with T >= 1", "re-extract the features")
        if self.dim is not None and arr.shape[1] != self.dim:
            raise DataError(
                where,
                f"feature width {arr.shape[1]}, expected {self.dim}",
                f"use the {self.dim}-d PCA C3D features of ActivityNet (or open the store with dim=None)",
            )
        if not np.issubdtype(arr.dtype, np.number):
            raise DataError(where, f"dtype {arr.dtype} is not numeric", "re-extract the features")
        feat = arr.astype(np.float32, copy=False)
        bad = ~np.isfinite(feat)
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            raise DataError(
                where,
                f"{int(bad.sum())} NaN/inf values in {rows.size} of {feat.shape[0]} frames (first at frame {rows[0]})",
                "re-extract the features of this video",
            )
        return torch.from_numpy(np.ascontiguousarray(feat))

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise DataError(path, "no such file", "point to the C3D features") from None
    except OSError as e:
        raise DataError(path, f"not a readable HDF5 file ({e})", "download or convert the file again") from None


def _read(dataset: h5py.Dataset, where: str) -> np.ndarray:
    try:
        return dataset[()]
    except OSError as e:
        raise DataError(where, f"unreadable dataset ({e})", "download or convert the file again") from None


def open_features(root: str | Path, dim: int | None = C3D_DIM) -> FeatureStore:
    """Open C3D features at ``root`` and say which layout they are in.

    ``root`` is the single hdf5 file; or a directory holding ``sub_activitynet_v1-3.c3d.hdf5``, or exactly one
    other ``*.hdf5`` (the synthetic benchmark writes ``sub_activitynet_synth.c3d.hdf5``), read as the single-file
    layout; or a directory of per-video ``<v_id>.h5``. ``dim`` is the width every video must have (500 for
    ActivityNet C3D; None accepts any).
    """
    root = Path(root)
    if root.is_file():
        return FeatureStore(root, "single", dim)
    if not root.is_dir():
        raise DataError(root, "no such file or directory", f"point to {SINGLE_FILE} or to a directory of v_<id>.h5")
    if (root / SINGLE_FILE).is_file():
        return FeatureStore(root / SINGLE_FILE, "single", dim)
    singles = sorted(root.glob("*.hdf5"))
    if len(singles) > 1:
        raise DataError(
            root,
            f"holds {len(singles)} .hdf5 files ({', '.join(p.name for p in singles[:3])}), so the layout is ambiguous",
            "keep one features file in the directory, or pass the file itself",
        )
    if singles:
        return FeatureStore(singles[0], "single", dim)
    if any(root.glob("*.h5")):
        return FeatureStore(root, "per-video", dim)
    raise DataError(
        root,
        f"holds neither {SINGLE_FILE} nor per-video <v_id>.h5 files",
        f"put {SINGLE_FILE} (groups <v_id>/{SINGLE_KEY}) or one <v_id>.h5 per video (dataset '{PER_VIDEO_KEY}') here",
    )


def resample_to_clips(feat: torch.Tensor, n: int) -> torch.Tensor:
    """Resample ``[T, D]`` features to ``[n, D]`` exactly as 2D-TAN's ``average_to_fixed_length`` (and SIL) does.

    Boundaries are ``idx = min(round(arange(n + 1) / n * T), T - 1)``, computed in float32 with round-half-to-even
    as torch does; clip ``i`` is the mean of frames ``idx[i] .. idx[i+1] - 1``, or frame ``idx[i]`` when that range
    is empty (T < n). A quirk kept on purpose: because the last boundary is clipped to ``T - 1``, the final frame
    never enters a mean when T > n, so the last clip averages frames ``idx[n-1] .. T - 2``.
    """
    if feat.ndim != 2 or feat.shape[0] == 0:
        raise ValueError(f"features must be [T, D] with T >= 1, got shape {tuple(feat.shape)}")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    t = feat.shape[0]
    idx = torch.arange(0, n + 1, 1.0) / n * t
    idx = torch.clamp(torch.round(idx).long(), max=t - 1)
    s, e = idx[:-1], idx[1:]
    csum = torch.cat([feat.new_zeros(1, feat.shape[1], dtype=torch.float64), feat.double().cumsum(0)])
    count = (e - s).clamp(min=1).unsqueeze(1).double()
    mean = (csum[e] - csum[s]) / count
    out = torch.where((e > s).unsqueeze(1), mean, feat[s].double())
    return out.to(feat.dtype)
