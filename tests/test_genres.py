"""Genres as the ranking head reads them: parsed from the catalog's pipe-separated text, kept
with the ratings, and averaged into each item's output vector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.data.genres import Genres, split_genres
from recsys.data.interactions import Interactions
from recsys.model import network
from recsys.model.network import ChoiceNet


def test_split_drops_blanks_repeats_and_the_no_genre_marker() -> None:
    assert split_genres("Comedy| Crime |Comedy||") == ["Comedy", "Crime"]
    assert split_genres("(no genres listed)") == [] and split_genres(None) == []


def test_parse_gives_sorted_compressed_rows() -> None:
    genres = Genres.parse(["Horror|Comedy", None, "Comedy", "Drama|Horror"])
    assert genres.n_items == 4 and genres.n_genres == 3
    assert [genres.of(r) for r in range(4)] == [
        ["Horror", "Comedy"], [], ["Comedy"], ["Horror", "Drama"]
    ]  # fmt: skip
    for r in range(4):  # indices sorted within a row: the sparse matrix relies on it
        row = genres.index[genres.indptr[r] : genres.indptr[r + 1]]
        assert list(row) == sorted(row)


def test_interactions_keep_their_genres_through_subset_and_concat() -> None:
    data = Interactions.from_arrays(
        np.array(["u", "u", "v"]), np.array(["a", "b", "a"]), np.array([4.0, 2.0, 5.0])
    ).with_genres({"a": "Horror", "b": "Comedy|Horror"})
    assert data.genres is not None
    b = data.item_vocab.index("b")
    assert set(data.genres.of(b)) == {"Comedy", "Horror"}
    part = data.subset(np.array([0]))
    assert part.genres is data.genres
    assert part.concat(data.subset(np.array([1, 2]))).genres is data.genres
    with pytest.raises(ValueError, match="one row per item"):
        Interactions(
            data.users, data.items, data.ratings, data.user_vocab, data.item_vocab,
            genres=Genres.parse(["Horror"]),
        )  # fmt: skip


@pytest.mark.parametrize("dense_max", [1 << 24, 0], ids=["dense", "sparse"])
def test_an_items_output_vector_adds_the_mean_of_its_genres(
    dense_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small catalogs keep the items x genres matrix dense, large ones sparse: both must agree.
    monkeypatch.setattr(network, "_DENSE_GENRES_MAX", dense_max)
    genres = Genres.parse(["Horror|Comedy", None, "Comedy"])
    net = ChoiceNet(2, 3, 4, genres=genres)
    assert (net.genre_matrix is None) == (dense_max == 0)
    with torch.no_grad():
        net.item_out.zero_()
        horror, comedy = genres.names.index("Horror"), genres.names.index("Comedy")
        net.genre_out[horror] = torch.tensor([1.0, 0.0, 0.0, 0.0])
        net.genre_out[comedy] = torch.tensor([0.0, 2.0, 0.0, 0.0])
        out = net.outputs()
    assert out[0].tolist() == [0.5, 1.0, 0.0, 0.0]
    assert out[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # no genres: its own vector only
    assert out[2].tolist() == [0.0, 2.0, 0.0, 0.0]
    # Gradients reach the genre embeddings.
    net.outputs().sum().backward()  # type: ignore[no-untyped-call]
    assert net.genre_out.grad is not None and net.genre_out.grad.abs().sum() > 0
