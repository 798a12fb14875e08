"""``python -m packviz pack`` end to end, in a subprocess, as a user runs it."""

import json
import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run([sys.executable, "-m", "packviz", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def lengths_file(tmp_path):
    f = tmp_path / "lengths.txt"
    f.write_text("\n".join(map(str, [100, 3000, 4096, 50, 2000, 1500])) + "\n")
    return f


@pytest.mark.parametrize("strategy", ["pad", "sorted", "next-fit", "ffd", "bfd"])
def test_pack_json_contract(lengths_file, strategy):
    p = run("pack", "--lengths", str(lengths_file), "--pack-len", "4096", "--strategy", strategy,
            "--batch-size", "2", "--json", "--rows")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    for key in ("num_sequences", "num_rows", "lower_bound_rows", "real_tokens", "slots", "utilization", "seconds"):
        assert key in out
    assert out["num_sequences"] == 6 and out["real_tokens"] == 10746
    assert out["lower_bound_rows"] == 3
    assert out["utilization"] == pytest.approx(out["real_tokens"] / out["slots"])
    assert len(out["rows"]) == out["num_rows"]
    placed = sorted((s[0], s[2]) for row in out["rows"] for s in row)
    assert placed == sorted(enumerate([100, 3000, 4096, 50, 2000, 1500]))


def test_split_chunks_carry_their_sequence_index(tmp_path):
    f = tmp_path / "l.txt"
    f.write_text("10\n9000\n")
    p = run("pack", "--lengths", str(f), "--pack-len", "4096", "--overlong", "split", "--json", "--rows")
    out = json.loads(p.stdout)
    chunks = [s for row in out["rows"] for s in row if s[0] == 1]
    assert sorted(c[2] for c in chunks) == [808, 4096, 4096]


def test_csv_input(tmp_path):
    f = tmp_path / "trace.csv"
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\nt,10,1\nt,20,2\n")
    out = json.loads(run("pack", "--lengths", str(f), "--pack-len", "32", "--json").stdout)
    assert out["num_rows"] == 1 and out["real_tokens"] == 30


@pytest.mark.parametrize("content, args, shown", [
    ("100\n5000\n", [], "sequence 1 has length 5000"),
    ("100\n-3\n", [], "-3"),
    ("100\nx\n", [], "'x'"),
    ("100\n", ["--strategy", "pad"], "batch_size"),
    ("100\n", ["--pack-len", "0"], "pack_len must be a positive integer, got 0"),
    ("100\n", ["--strategy", "pad", "--batch-size", "-2"], "batch_size must be a positive integer, got -2"),
    ("100\n99999999999999999999999\n", [], "line 2: 99999999999999999999999 is too large for a length"),
    ("# lengths, one per line\n100\nabc\n", [], "line 3: 'abc'"),
])
def test_bad_input_exits_nonzero_with_one_line(tmp_path, content, args, shown):
    f = tmp_path / "l.txt"
    f.write_text(content)
    p = run("pack", "--lengths", str(f), "--pack-len", "4096", "--json", *args)
    assert p.returncode != 0
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and shown in lines[0]


def test_human_readable_output(lengths_file):
    p = run("pack", "--lengths", str(lengths_file), "--pack-len", "4096")
    assert p.returncode == 0 and "rows (lower bound 3)" in p.stdout


def test_a_file_that_is_not_text_exits_with_one_line(tmp_path):
    f = tmp_path / "l.bin"
    f.write_bytes(b"100\n\x89PNG\xff\n")
    p = run("pack", "--lengths", str(f), "--pack-len", "4096")
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "l.bin, line 2: not UTF-8" in lines[0]
