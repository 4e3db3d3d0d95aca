"""Artifacts: a model version is data, not a pickle.

    <artifact_dir>/<version>/
        model.safetensors   tensors (factors, biases, exposure arrays)
        vocab.json          external ids of the embedding rows
        manifest.json       version, config, metrics, data counts, SHA-256 of both files

Loading verifies every checksum before reading a byte of the tensors, so a truncated or
tampered file is refused with an `ArtifactError`. Saving writes to a temporary folder in the
same directory, verifies it, then renames it into place: a crash never leaves half a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from recsys.data.vocab import Vocabulary
from recsys.errors import ArtifactError
from recsys.model.card import ModelCard
from recsys.model.genre_prior import GenrePrior
from recsys.model.ranking import RankingHead
from recsys.model.recommender import Recommender

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
"""Format 2 adds the ranking head; a format-1 artifact loads without one (lists by rating)."""
_RANKING = ("user_vectors", "item_in", "item_out", "item_bias")
_PRIOR = ("rating", "ranking_bias", "typical_out", "typical_in")
"""The genre prior's arrays (optional: artifacts before it load without one)."""
TWIN_SUFFIX = ".evaluated"
"""A served model refit on all ratings keeps its evaluated twin at `<version>.evaluated`."""
_TENSORS = "model.safetensors"
_VOCAB = "vocab.json"
_MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _combined(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def _write(rec: Recommender, folder: Path, version: str) -> str:
    if rec.new_items:
        raise ArtifactError("a model extended with new items is not saved: save the trained one")
    tensors: dict[str, np.ndarray] = {
        "user_factors": np.ascontiguousarray(rec.user_factors, dtype=np.float32),
        "item_factors": np.ascontiguousarray(rec.item_factors, dtype=np.float32),
        "user_bias": np.ascontiguousarray(rec.user_bias, dtype=np.float32),
        "item_bias": np.ascontiguousarray(rec.item_bias, dtype=np.float32),
        "user_counts": np.ascontiguousarray(rec.user_counts, dtype=np.int64),
        "item_counts": np.ascontiguousarray(rec.item_counts, dtype=np.int64),
        "seen_indptr": np.ascontiguousarray(rec.seen_indptr, dtype=np.int64),
        "seen_items": np.ascontiguousarray(rec.seen_items, dtype=np.int32),
    }
    if rec.seen_liked is not None:
        tensors["seen_liked"] = np.ascontiguousarray(rec.seen_liked, dtype=np.uint8)
    head = rec.ranking
    if head is not None:
        for name in _RANKING:
            tensors[f"ranking.{name}"] = np.ascontiguousarray(getattr(head, name))
        if head.genre_out is not None:
            tensors["ranking.genre_out"] = np.ascontiguousarray(head.genre_out)
    prior = rec.genre_prior
    if prior is not None:
        for name in _PRIOR:
            value = getattr(prior, name)
            if value is not None:
                tensors[f"genre_prior.{name}"] = np.ascontiguousarray(value, dtype=np.float32)
    save_file(tensors, str(folder / _TENSORS))
    (folder / _VOCAB).write_text(
        json.dumps({"users": rec.user_vocab.ids, "items": rec.item_vocab.ids})
    )
    files = {name: _sha256(folder / name) for name in (_TENSORS, _VOCAB)}
    checksum = _combined(files)
    manifest = {
        "format_version": FORMAT_VERSION,
        "version": version,
        "global_bias": rec.global_bias,
        "y_range": list(rec.y_range),
        "ranking": None
        if head is None
        else {
            "blend": head.blend,
            "liked_threshold": head.liked_threshold,
            "disliked_input": head.disliked_input,
            "history_exponent": head.history_exponent,
            "members": head.members,
        },
        "genre_prior": None if prior is None else {"genres": list(prior.names)},
        # "info": the card's key since artifacts first had one, so older readers still load it.
        "info": rec.card.to_json(),
        "files": files,
        "checksum": checksum,
    }
    (folder / _MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    return checksum


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with path.open("rb") as fh:
            os.fsync(fh.fileno())


def save(rec: Recommender, artifact_dir: Path, version: str) -> tuple[Path, str]:
    """Write `rec` as `artifact_dir/version`; returns (folder, checksum). Atomic."""
    artifact_dir.mkdir(parents=True, exist_ok=True)
    final = artifact_dir / version
    if final.exists():
        raise ArtifactError(f"artifact {final} already exists; model versions are immutable")
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=artifact_dir))
    try:
        rec.card.version = version
        checksum = _write(rec, tmp, version)
        _fsync_tree(tmp)
        load(tmp)  # verify what is on disk before anyone can see it
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, checksum


def load_twin(folder: Path, served: Recommender) -> Recommender:
    """The evaluated twin of a served model (itself when it has none): what was evaluated on
    a holdout that it never learned, unlike a model refit on all ratings."""
    twin = served.card.evaluated_twin
    if twin is None:
        return served
    return load(folder.parent / twin.artifact, twin.checksum)


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / _MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ArtifactError(f"no model artifact at {folder} (missing {_MANIFEST})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"artifact manifest {path} is corrupted: {exc}") from exc
    if manifest.get("format_version") not in READABLE_FORMATS:
        raise ArtifactError(
            f"artifact {folder} has format {manifest.get('format_version')!r}; "
            f"this version of recsys reads formats {', '.join(map(str, READABLE_FORMATS))}"
        )
    return manifest


def verify(folder: Path, expected_checksum: str | None = None) -> dict[str, Any]:
    """Check every file against the manifest (and the manifest against the registry)."""
    manifest = read_manifest(folder)
    files: dict[str, str] = manifest.get("files", {})
    for name in (_TENSORS, _VOCAB):
        path = folder / name
        if not path.is_file():
            raise ArtifactError(f"artifact {folder} is incomplete: {name} is missing")
        actual = _sha256(path)
        if actual != files.get(name):
            raise ArtifactError(
                f"artifact {folder} is corrupted: checksum of {name} is {actual[:12]}..., "
                f"the manifest says {str(files.get(name))[:12]}...; retrain or restore it"
            )
    checksum = _combined(files)
    if checksum != manifest.get("checksum") or (
        expected_checksum is not None and checksum != expected_checksum
    ):
        raise ArtifactError(f"artifact {folder} does not match the checksum it was registered with")
    return manifest


def _ranking_head(
    tensors: dict[str, np.ndarray], meta: dict[str, Any] | None
) -> RankingHead | None:
    if meta is None:
        return None
    arrays = {name: tensors[f"ranking.{name}"] for name in _RANKING}
    return RankingHead(
        **arrays,
        blend=float(meta["blend"]),
        liked_threshold=float(meta["liked_threshold"]),
        disliked_input=float(meta["disliked_input"]),
        history_exponent=float(meta["history_exponent"]),
        members=int(meta.get("members", 1)),  # artifacts from before ensembles: one head
        genre_out=tensors.get("ranking.genre_out"),
    )


def _genre_prior(tensors: dict[str, np.ndarray], meta: dict[str, Any] | None) -> GenrePrior | None:
    if meta is None:
        return None
    get = tensors.get
    return GenrePrior(
        tuple(meta["genres"]),
        tensors["genre_prior.rating"],
        get("genre_prior.ranking_bias"),
        get("genre_prior.typical_out"),
        get("genre_prior.typical_in"),
    )


def load(folder: Path, expected_checksum: str | None = None) -> Recommender:
    """Load and verify an artifact folder."""
    manifest = verify(folder, expected_checksum)
    try:
        t = load_file(str(folder / _TENSORS))
        vocab = json.loads((folder / _VOCAB).read_text())
        return Recommender(
            user_factors=t["user_factors"],
            item_factors=t["item_factors"],
            user_bias=t["user_bias"],
            item_bias=t["item_bias"],
            global_bias=float(manifest["global_bias"]),
            y_range=(float(manifest["y_range"][0]), float(manifest["y_range"][1])),
            user_vocab=Vocabulary(vocab["users"]),
            item_vocab=Vocabulary(vocab["items"]),
            user_counts=t["user_counts"],
            item_counts=t["item_counts"],
            seen_indptr=t["seen_indptr"],
            seen_items=t["seen_items"],
            card=ModelCard.model_validate(manifest.get("info") or {}),
            ranking=_ranking_head(t, manifest.get("ranking")),
            seen_liked=t.get("seen_liked"),  # absent from older artifacts
            genre_prior=_genre_prior(t, manifest.get("genre_prior")),
        )
    except (SafetensorError, KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
        # pydantic's ValidationError is a ValueError: a card that does not read is reported
        # like a damaged tensor file.
        raise ArtifactError(f"artifact {folder} cannot be read: {exc}") from exc
