from almabench.grid.gpu import cells_that_fit


def test_cells_that_fit_leaves_headroom_and_stays_between_one_and_the_cap():
    gib = 2**30
    assert cells_that_fit(80 * gib, 10 * gib) == 6  # 0.85 · 80 = 68 GiB -> 6 cells of 10 GiB
    assert cells_that_fit(80 * gib, 1 * gib) == 8  # capped
    assert cells_that_fit(4 * gib, 10 * gib) == 1  # never zero: one cell always runs
    assert cells_that_fit(80 * gib, 2 * gib, headroom=0.5, cap=100) == 20
