"""Length sources: the real-trace summary and sampler, the seed scenario, synthetic sources, file readers."""

import io
import pathlib
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from packviz import lengths as L
from packviz import trace

TRACE = pathlib.Path(__file__).resolve().parents[2] / "shared/data/azure-llm-inference-2023/AzureLLMInferenceTrace_conv.csv"


def test_azure_conv_is_a_contiguous_window_of_the_real_trace_in_arrival_order():
    full = trace.azure_conv().prompt_tokens
    x = L.azure_conv(500, seed=3)
    starts = [i for i in range(len(full) - 499) if full[i] == x[0] and (full[i:i + 500] == x).all()]
    assert len(starts) >= 1  # the window is found in the trace, in the same order
    assert (L.azure_conv(100, seed=3) == L.azure_conv(100, seed=3)).all()
    assert (L.azure_conv(100, seed=3) != L.azure_conv(100, seed=4)).any()
    assert (L.azure_conv(len(full)) == full).all()
    with pytest.raises(ValueError, match="more than the trace.s 19,366 requests; for more lengths use azure_resample"):
        L.azure_conv(len(full) + 1)


def test_resampler_draws_real_values_with_the_real_distribution():
    full = trace.azure_conv().prompt_tokens
    x = L.azure_resample(100_000, seed=1)
    assert np.isin(x, full).all()  # every value is a real prompt length
    assert abs(x.mean() - full.mean()) / full.mean() < 0.02
    for p in (10, 50, 90):
        assert abs(np.percentile(x, p) - np.percentile(full, p)) / np.percentile(full, p) < 0.03


@pytest.mark.skipif(not TRACE.exists(), reason="the raw trace is only beside the repo in ../shared")
def test_shipped_trace_matches_the_raw_trace():
    raw = L.read_lengths(TRACE)
    assert (raw == trace.azure_conv().prompt_tokens).all()


def test_seed_scenario_mixes_short_and_long():
    x = L.seed_scenario(40, long_fraction=0.25, seed=0)
    assert len(x) == 40 and x.max() <= 4000
    short, long = x[x < 1000], x[x >= 1000]
    assert len(long) == 10 and (long >= 3600).all() and (short >= 45).all() and (short <= 50).all()
    assert (L.seed_scenario(seed=2) == L.seed_scenario(seed=2)).all()


def test_synthetic_sources():
    x = L.lognormal(10_000, median=500, sigma=0.5, seed=0)
    assert abs(np.median(x) - 500) < 25
    assert L.lognormal(1000, median=5000, sigma=1, max_len=4096, seed=0).max() == 4096
    u = L.uniform(5000, 10, 20, seed=0)
    assert u.min() == 10 and u.max() == 20
    assert (L.uniform(10, 7, 7) == 7).all()
    for name, f in L.SOURCES.items():
        x = f(32, 0)
        assert len(x) == 32 and x.min() >= 1, name


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_counts(bad):
    with pytest.raises(ValueError, match="positive integer"):
        L.azure_conv(bad)


@pytest.mark.parametrize("call, shown", [
    (lambda: L.lognormal(10, max_len=0), "max_len must be a positive integer, got 0"),
    (lambda: L.lognormal(10, max_len=2.5), "max_len must be a positive integer, got 2.5"),
    (lambda: L.lognormal(10, median=-1), "median must be a finite number > 0, got -1"),
    (lambda: L.uniform(10, 1.5, 4), "low must be a positive integer, got 1.5"),
    (lambda: L.uniform(10, 5, 4), "need low <= high, got low=5, high=4; swap them"),
    (lambda: L.lognormal(10, sigma=-0.5), "sigma must be a finite number >= 0, got -0.5"),
    (lambda: L.seed_scenario(10, long_fraction=1.5), r"long_fraction must be a number in \[0, 1\], got 1.5"),
    (lambda: L.seed_scenario(10, seed=-1), "seed must be an integer >= 0, got -1"),
])
def test_bad_source_parameters_name_the_value(call, shown):
    with pytest.raises(ValueError, match=shown):
        call()


def test_read_plain_and_csv(tmp_path):
    plain = tmp_path / "l.txt"
    plain.write_text("# lengths\n12\n\n7\n")
    assert L.read_lengths(plain).tolist() == [12, 7]
    csvf = tmp_path / "t.csv"
    csvf.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,374,44\n2023-11-16 18:15:50,396,109\n")
    assert L.read_lengths(csvf).tolist() == [374, 396]


@pytest.mark.parametrize("text, shown", [
    ("12\nabc\n", "line 2: 'abc'"),
    ("12\n3.5\n", "line 2: '3.5'"),
    ("12\n0\n", "line 2: 0 is not a length; lengths are integers >= 1"),
    ("", "no lengths"),
    ("a,b\n1,2\n", "no 'ContextTokens' column"),
    ("1,234\n5\n", "line 1: '1,234' is not an integer length"),
    ("x,ContextTokens\n\n1,5\n\n2,abc\n", "line 5: 'abc'"),
    ("x,ContextTokens\n1,5\n2\n", "line 3: no 'ContextTokens' value"),
])
def test_read_errors_name_the_bad_value(tmp_path, text, shown):
    f = tmp_path / "bad.txt"
    f.write_text(text)
    with pytest.raises(ValueError, match=shown):
        L.read_lengths(f)


def test_missing_file():
    with pytest.raises(ValueError, match="not found"):
        L.read_lengths("/nonexistent/lengths.txt")


def test_read_comment_with_a_comma_and_byte_order_marks(tmp_path):
    f = tmp_path / "l.txt"
    f.write_text("# prompt lengths, one per line\n12\n7\n")
    assert L.read_lengths(f).tolist() == [12, 7]
    f.write_bytes(b"\xef\xbb\xbf12\n7\n")  # UTF-8 with a BOM, as spreadsheets save it
    assert L.read_lengths(f).tolist() == [12, 7]
    f.write_bytes(b"\xef\xbb\xbfContextTokens,GeneratedTokens\n374,44\n")
    assert L.read_lengths(f).tolist() == [374]


def test_unreadable_files_are_a_value_error_naming_the_file(tmp_path, monkeypatch):
    f = tmp_path / "l.txt"
    f.write_bytes(b"12\n7\n\xff\xfe\n")
    with pytest.raises(ValueError, match=r"l.txt, line 3: not UTF-8"):
        L.read_lengths(f)

    def denied(*a, **kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(L.trace, "open", denied, raising=False)  # shadows the builtin where files are read
    with pytest.raises(ValueError, match=r"l.txt: cannot read \(Permission denied\)"):
        L.read_lengths(f)


def _read_line_by_line(text):
    """The plain format the obvious way: a line's value is its text before any ``#``, stripped;
    the lengths, or ``("error", line)`` for the first line that is not an integer from 1 to 2**63 - 1.
    A BOM at the start is not text (UTF-8 with a BOM)."""
    out = []
    for i, line in enumerate(io.StringIO(text.removeprefix("\ufeff"), newline=None), 1):
        value = line.split("#", 1)[0].strip()
        if not value:
            continue
        if not re.fullmatch(r"[+-]?[0-9]+", value, flags=re.ASCII):   # ASCII digits: int() also takes 1_0
            return "error", i
        n = int(value)
        if not 1 <= n <= 2**63 - 1:
            return "error", i
        out.append(n)
    return out or ("error", None)


LINES = st.lists(st.one_of(st.integers(-3, 2**64).map(str), st.sampled_from(
    ["", "# note", " 7 ", "12 # seven", "1_0", "2.5", "+3", "\t9", "10 20", "0", "007", "9223372036854775807",
     "9223372036854775808", "\ufeff5", "x"])), max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.tuples(LINES, st.sampled_from(["\n", "\r\n", "\r"])).map(lambda t: t[1].join(t[0])),
                      st.text(alphabet="0123456789 \t\r\n#-+._x", max_size=40)))
def test_the_fast_reader_agrees_with_the_line_by_line_reference(tmp_path, text):
    first = next((v for v in (line.split("#", 1)[0].strip() for line in io.StringIO(text, newline=None)) if v), "")
    assume("," not in first)  # the CSV format: tested above
    f = tmp_path / "l.txt"
    f.write_text(text, encoding="utf-8", newline="")
    expected = _read_line_by_line(text)
    if isinstance(expected, tuple):
        with pytest.raises(ValueError) as info:
            L.read_lengths(f)
        assert ("no lengths found" in str(info.value)) if expected[1] is None else f"line {expected[1]}:" in str(info.value)
    else:
        got = L.read_lengths(f)
        assert got.dtype == np.int64 and got.tolist() == expected

