import torch

from almabench.stream import Megabatch, make_stream, megabatch_size, step_data


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
