"""modelbay.units: the one rendering of sizes, shares, durations, times and precisions (CLI and TUI)."""

from __future__ import annotations

from modelbay.manifest import QuantizationInfo
from modelbay.units import ms, percent, precision, size, truncate, when


def test_sizes_in_binary_units_wide_and_compact():
    cases = [(530, "530 B", "530B"), (1536, "1.5 KB", "1.5K"), (5 * 1024**2, "5.0 MB", "5.0M")]
    cases += [(3 * 1024**4, "3072.0 GB", "3072.0G"), (None, "-", "-")]
    for n, wide, compact in cases:
        assert (size(n), size(n, compact=True)) == (wide, compact), n


def test_times_from_epoch_and_iso_with_and_without_the_year():
    iso = "2026-11-22T16:20:31.123Z"
    assert when(iso) == "2026-11-22 16:20" and when(iso, year=False) == "11-22 16:20"
    assert when(iso, seconds=True) == "2026-11-22 16:20:31"
    assert when(0) == "1970-01-01 00:00" and when(None) == when("") == "-"


def test_shares_durations_and_cuts():
    assert (percent(0.1234), percent(None)) == ("12.3%", "-")
    assert (ms(0.42), ms(99.94), ms(250.4), ms(None)) == ("0.4ms", "99.9ms", "250ms", "-")
    assert truncate("abcdef", 6) == "abcdef" and truncate("abcdefg", 6) == "abcde…"


def test_precision_names_the_weights_and_the_method():
    def q(method, weight_type="QInt8"):
        return QuantizationInfo(method=method, weight_type=weight_type)

    assert precision(None) == precision(q("none")) == "fp32"
    assert [precision(q(m)) for m in ("dynamic", "static", "mixed")] == ["int8 dyn", "int8 st", "int8 mix"]
    assert precision(q("dynamic", "QUInt8")) == "uint8 dyn" and precision(q("dynamic", None)) == "int8 dyn"
