"""The shared checks: what each accepts (converted), and the one line it refuses with."""

import numpy as np
import pytest

from packviz import checks


def test_scalars_are_converted_and_bad_ones_named():
    assert type(checks.positive_int("n", np.int32(3))) is int
    assert checks.nonnegative_float("sigma", 0) == 0.0
    assert checks.fraction("f", 1) == 1.0
    for call, shown in [
        (lambda: checks.positive_int("n", True), "n must be a positive integer, got True"),
        (lambda: checks.positive_int("n", 3.0), "got 3.0"),
        (lambda: checks.positive_int("n", 20, maximum=19), "n is 20, above the largest allowed value 19"),
        (lambda: checks.nonnegative_int("seed", np.int64(-2)), "seed must be an integer >= 0, got -2"),
        (lambda: checks.positive_float("rate", float("nan")), "rate must be a finite number > 0, got nan"),
        (lambda: checks.nonnegative_float("sigma", float("inf")), "sigma must be a finite number >= 0, got inf"),
        (lambda: checks.fraction("f", 0, open_low=True), r"f must be a number in \(0, 1\], got 0"),
        (lambda: checks.one_of("kind", "dense", ("padded", "packed")), "kind must be one of 'padded', 'packed'; got 'dense'"),
    ]:
        with pytest.raises(ValueError, match=shown):
            call()


@pytest.mark.parametrize("bad", [128, (128,), (128, 0), (1.5, 2), (True, 2), "ab"])
def test_int_pair(bad):
    assert checks.int_pair("tile", (np.int64(64), 32)) == (64, 32)
    with pytest.raises(ValueError, match="tile must be a pair of positive integers"):
        checks.int_pair("tile", bad)


def test_int_array():
    out = checks.int_array("widths", (np.int16(2), 0), minimum=0)
    assert out.dtype == np.int64 and out.tolist() == [2, 0]
    assert checks.int_array("x", [], allow_empty=True).shape == (0,)
    for bad, shown in [(np.array([True, False]), r"x\[0\] is True"), (np.array([1.0]), r"x\[0\] is 1.0"),
                       ([1, None], r"x\[1\] is None"), ([], "x is empty"), (np.zeros((2, 2), int), "one-dimensional"),
                       ([0], r"x\[0\] is 0: x must be integers >= 1")]:
        with pytest.raises(ValueError, match=shown):
            checks.int_array("x", bad)
