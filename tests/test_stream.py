import pytest
import torch

from almabench.cell.stream import Megabatch, check_stream, make_stream, megabatch_size, step_data
from almabench.errors import AlmabenchError


def hand_made_stream() -> list[Megabatch]:
    t = torch.tensor
    return [Megabatch(t([0, 1, 2]), t([3])), Megabatch(t([4, 5, 6]), t([7])), Megabatch(t([8, 9, 10]), t([11]))]


def test_replay_policies_on_a_hand_made_stream():
    stream = hand_made_stream()
    full = step_data(stream, 3, "full")
    assert full.train.tolist() == [0, 1, 2, 4, 5, 6, 8, 9, 10]
    assert full.val.tolist() == [3, 7, 11]
    none = step_data(stream, 3, "none")
    assert none.train.tolist() == [8, 9, 10] and none.val.tolist() == [11]
    previous = step_data(stream, 3, "previous")
    assert previous.train.tolist() == [4, 5, 6, 8, 9, 10] and previous.val.tolist() == [7, 11]
    assert step_data(stream, 1, "previous").train.tolist() == [0, 1, 2]


def test_stream_partitions_a_seeded_permutation_into_equal_megabatches():
    stream = make_stream(n_train=103, megabatches=4, seed=7, val_fraction=0.1)
    size = megabatch_size(103, 4)
    assert size == 25
    order = torch.randperm(103, generator=torch.Generator().manual_seed(7))
    for t, m in enumerate(stream):
        assert len(m.train) == 22 and len(m.val) == 3  # 0.1 * 25 = 2.5 rounds half up to 3
        assert torch.equal(torch.cat([m.train, m.val]), order[t * size : (t + 1) * size])
    everything = torch.cat([torch.cat([m.train, m.val]) for m in stream])
    assert len(set(everything.tolist())) == 100  # disjoint; the 3 left-over examples are dropped


def test_same_seed_same_stream_other_seed_other_stream():
    a, b, c = (make_stream(60, 3, s) for s in (1, 1, 2))
    assert all(torch.equal(x.train, y.train) for x, y in zip(a, b))
    assert not all(torch.equal(x.train, y.train) for x, y in zip(a, c))


def test_the_released_layout_takes_train_parts_from_the_head_and_validation_from_the_tail():
    stream = make_stream(n_train=50_000, megabatches=8, seed=3, layout="dataset-order")
    assert [(int(m.train[0]), int(m.train[-1]), int(m.val[0]), int(m.val[-1])) for m in stream[:2]] == [
        (0, 5_624, 45_000, 45_624), (5_625, 11_249, 45_625, 46_249)]
    assert int(stream[-1].train[-1]) == 44_999 and int(stream[-1].val[-1]) == 49_999
    assert all(torch.equal(m.train, o.train) for m, o in zip(stream, make_stream(50_000, 8, 4, layout="dataset-order")))
    small = make_stream(n_train=103, megabatches=4, seed=0, layout="dataset-order")  # 3 left over: dropped
    assert [m.val.tolist() for m in small] == [[88, 89, 90], [91, 92, 93], [94, 95, 96], [97, 98, 99]]


def test_the_validation_part_is_at_least_one_and_leaves_at_least_one_to_train():
    """Megabatches of 10: 0.95 · 10 rounds to 10 and 0.01 · 10 to 0; both are held inside 1..9."""
    assert [(len(m.train), len(m.val)) for m in make_stream(20, 2, 0, val_fraction=0.95)] == [(1, 9)] * 2
    assert [(len(m.train), len(m.val)) for m in make_stream(20, 2, 0, val_fraction=0.01)] == [(9, 1)] * 2
    assert [(len(m.train), len(m.val)) for m in make_stream(4, 2, 0, val_fraction=0.5)] == [(1, 1)] * 2


@pytest.mark.parametrize("n_train, megabatches, val_fraction, stream_images", [
    (2, 1, 0.1, None),  # T = 1, two examples: one to train, one to validate
    (4, 2, 0.99, None),
    (100, 2, 0.01, 6),  # stream_images = 3T: the smallest stream whose megabatches each train on a batch of 2
    (100, 2, 0.5, 8),  # half validating: 4 per megabatch
    (100, 1, 0.5, 4),
    (100, 3, 0.1, 100),  # the whole training set
])
def test_the_smallest_valid_streams_pass_the_checks(n_train, megabatches, val_fraction, stream_images):
    check_stream(n_train, megabatches, val_fraction, stream_images)


@pytest.mark.parametrize("n_train, megabatches, val_fraction, stream_images, message", [
    (10, 0, 0.1, None, "megabatches must be at least 1, got 0"),
    (10, 2, 0.0, None, r"val_fraction must be in \(0, 1\), got 0.0"),
    (10, 2, 1.0, None, r"val_fraction must be in \(0, 1\), got 1.0"),
    (3, 2, 0.1, None, "2 megabatches need at least 4 training examples"),
    (100, 2, 0.1, 3, "stream_images = 3 cut into 2 megabatches trains on 1 image.* per megabatch, less than one batch "
                     r"\(two images; batch norm cannot train on one\); use at least 6$"),
    (100, 2, 0.1, 5, "stream_images = 5 cut into 2 megabatches trains on 1 image.*; use at least 6$"),
    (100, 2, 0.5, 7, "stream_images = 7 cut into 2 megabatches trains on 1 image.*; use at least 8$"),
    (100, 1, 0.1, 1, "stream_images = 1 cut into 1 megabatches trains on 1 image"),
    (100, 1, 0.1, 0, r"stream_images must be in 1..100 \(the training images the dataset holds\), got 0"),
    (100, 1, 0.1, 101, "stream_images must be in 1..100"),
])
def test_streams_that_cannot_be_cut_are_named_in_one_line(n_train, megabatches, val_fraction, stream_images,
                                                          message):
    with pytest.raises(AlmabenchError, match=message):
        check_stream(n_train, megabatches, val_fraction, stream_images)
