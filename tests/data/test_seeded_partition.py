"""The seeded split every data module uses: sizes, coverage, determinism, bad sizes."""

import pytest

from attnconv_pl.data import seeded_partition


def test_parts_have_the_requested_sizes_and_cover_every_index_once():
    rest, val, test = seeded_partition(100, [0.15, 20], seed=0)
    assert (len(rest), len(val), len(test)) == (65, 15, 20)
    assert sorted(rest + val + test) == list(range(100))
    assert all(part == sorted(part) for part in (rest, val, test))


def test_same_seed_same_parts_and_other_seed_other_parts():
    assert seeded_partition(50, [10], seed=3) == seeded_partition(50, [10], seed=3)
    assert seeded_partition(50, [10], seed=3)[1] != seeded_partition(50, [10], seed=4)[1]


def test_empty_holdout_keeps_everything():
    assert seeded_partition(7, [0], seed=0) == [list(range(7)), []]


@pytest.mark.parametrize(
    ("sizes", "error", "message"),
    [
        ([10], ValueError, "at least one item is left for training"),
        ([0.5, 0.5], ValueError, "at least one item is left for training"),
        ([1.0], ValueError, "fraction must be in \\[0, 1\\)"),
        ([-1], ValueError, "count must be >= 0"),
        (["3"], TypeError, "int \\(a count\\) or a float \\(a fraction\\)"),
    ],
)
def test_bad_sizes_say_what_is_wrong(sizes, error, message):
    with pytest.raises(error, match=message):
        seeded_partition(10, sizes, seed=0)
