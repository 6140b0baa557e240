"""The name vectors' 6-bit packing: exact round trips, the int8 format still read, precision kept."""

from __future__ import annotations

import numpy as np
import pytest

from kvgraph.docgraph import name_codec
from kvgraph.docgraph.build import packed_unit_rows, quantize_rows


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_packed_rows_hold_each_row_scaled_to_31_and_rounded() -> None:
    v = unit_rows(200, 384)
    packed = name_codec.quantize(v)
    assert packed.dtype == np.uint8 and packed.shape == (200, 288)
    expected = np.rint(v * (31 / np.abs(v).max(axis=1, keepdims=True))).astype(np.int8)
    np.testing.assert_array_equal(name_codec.values(packed), expected)
    assert name_codec.row_dim(packed) == 384


def test_every_value_survives_the_packing() -> None:
    # all 63 values in every position of the 4-value groups
    ints = (np.arange(63 * 4).reshape(63, 4) % 63 - 31).astype(np.float32)
    rows = np.tile(ints, (1, 8))  # 32 values a row
    rows[:, 0] = 31  # the peak sets the scale: values stay what they are
    np.testing.assert_array_equal(name_codec.values(name_codec.quantize(rows)), rows.astype(np.int8))


def test_a_width_that_is_not_a_multiple_of_4_and_bits_8_give_the_int8_format() -> None:
    for v, bits in ((unit_rows(5, 10), None), (unit_rows(5, 16), 8)):
        packed = name_codec.quantize(v, bits=bits)
        assert packed.dtype == np.int8 and packed.shape == v.shape
        assert np.abs(packed).max(axis=1).tolist() == [127] * 5
        assert name_codec.values(packed) is packed and name_codec.row_dim(packed) == v.shape[1]


def test_unpacked_rows_stay_close_and_packing_them_again_changes_nothing() -> None:
    v = unit_rows(2000, 384, seed=1)
    u = packed_unit_rows(quantize_rows(v))
    assert float(np.einsum("ij,ij->i", u, v).min()) > 0.995
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-5)
    # builds and updates work on unpacked rows: packing those again must give the same bytes
    np.testing.assert_array_equal(quantize_rows(u), quantize_rows(v))


def test_zero_rows_and_empty_input() -> None:
    z = name_codec.quantize(np.zeros((2, 8), np.float32))
    assert name_codec.values(z).tolist() == [[0] * 8] * 2
    assert name_codec.quantize(np.zeros((0, 8), np.float32)).shape == (0, 6)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="rows"):
        name_codec.quantize(np.zeros(8, np.float32))
    with pytest.raises(ValueError, match="packed name vectors"):
        name_codec.values(np.zeros((2, 8), np.float32))
