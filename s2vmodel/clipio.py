"""Reading clips for the model: the one way s2vmodel opens a dataset, through `s2vdata.clips`.

The trainer's data, its cache and evaluation all come here; `s2vdata.clips` is the one
reader of the shard layout, and ClipError (a clip or shard that cannot be used) becomes
either a skipped clip (here: yielded with its reason) or DataError (nothing usable at all).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from s2vdata.clips import ClipError, ClipRef, clip_refs, decode_clip, iter_clip_parts

__all__ = ["ClipError", "ClipRef", "DataError", "clip_name", "iter_decoded", "load_clip_refs"]


class DataError(RuntimeError):
    """The training data cannot be used at all (not a manifest, empty split, missing shards)."""


def load_clip_refs(manifests: Iterable[Path | str], *, split: str) -> list[ClipRef]:
    """Return the clips of `split` in the manifests; DataError naming the file: none, not a manifest, or a shard missing."""
    manifests = list(manifests)
    for manifest in manifests:
        if "://" not in str(manifest) and not Path(manifest).exists():
            raise DataError(f"{manifest}: no manifest there: build one with `s2vdata build --target T`")
    try:
        return clip_refs(manifests, split=split)
    except ClipError as err:
        raise DataError(str(err)) from err
    except OSError as err:
        # a folder or an unreadable file given as a manifest
        raise DataError(
            f"{err.filename or err}: cannot read it as a manifest ({err.strerror or err}): pass a manifest CSV"
        ) from err


def clip_name(ref: ClipRef) -> str:
    """Return how messages name a clip: its id, shard and key."""
    return f"{ref.clip_id} ({Path(ref.shard).name}:{ref.key})"


def iter_decoded(refs: list[ClipRef]) -> Iterator[tuple[ClipRef, tuple[np.ndarray, np.ndarray] | ClipError]]:
    """Yield (ref, (frames (120, 286, 286, 3) uint8, audio (176400,) float32) or the ClipError) for every ref.

    Each shard is read once (refs come out grouped by shard); a damaged shard costs its
    clips (each yields the shard's ClipError), not the others.
    """
    by_shard: dict[str, list[ClipRef]] = {}
    for ref in refs:
        by_shard.setdefault(ref.shard, []).append(ref)
    for group in by_shard.values():
        try:
            found = list(iter_clip_parts(group))
        except ClipError as err:
            for ref in group:
                yield ref, err
            continue
        for ref, parts in found:
            try:
                yield ref, decode_clip(parts, name=clip_name(ref))
            except ClipError as err:
                yield ref, err
