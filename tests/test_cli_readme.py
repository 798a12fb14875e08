"""Every promise of the README's "Command line" section, run: what each command prints, the exit statuses,
standard input, the limits. In-process (``packviz.cli.main``) where that is enough, as a real process where
the promise is about one (a pipe, a signal, a shell)."""

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from packviz import plot
from packviz.cli import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, build_parser, main

ROOT = pathlib.Path(__file__).resolve().parent.parent
CSV = ("TIMESTAMP,ContextTokens,GeneratedTokens\n"
       "2023-11-16 18:15:46.6805900,374,44\n"
       "2023-11-16 18:15:50.9951690,396,109\n"
       "2023-11-16 18:15:51.0000000,20,3\n")


@pytest.fixture(scope="module")
def section():
    text = (ROOT / "README.md").read_text()
    return re.search(r"^## Command line\n(.*?)^## ", text, flags=re.S | re.M).group(1)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "lengths.txt").write_text("# two prompts\n\n100\n3000\n")
    (tmp_path / "trace.csv").write_text(CSV)
    return tmp_path


def run(capsys, *argv):
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def run_process(*args, stdin=None, shell=None, env=None):
    cmd = ["bash", "-c", shell] if shell else [sys.executable, "-m", "packviz", *map(str, args)]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120, env=env)


def one_object(stdout: str) -> dict:
    """Standard output is exactly one JSON object, on one line."""
    assert stdout.count("\n") == 1 and stdout.endswith("\n"), stdout[:200]
    out = json.loads(stdout)
    assert isinstance(out, dict)
    return out


# ---------------------------------------------------------------------- the examples
def test_every_example_command_line_parses(section, files):
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    lines = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert len(lines) == 8 and all(line.startswith("python -m packviz ") for line in lines)
    parser = build_parser()
    for line in lines:
        line = line.replace("FILE", str(files / "lengths.txt"))
        for variant in (re.sub(r"\[([^]]*)\]", r"\1", line), re.sub(r"\s*\[[^]]*\]", "", line)):  # with, without
            args = parser.parse_args(shlex.split(variant)[3:])
            assert args.command in ("pack", "flops", "figures", "bench", "serve", "replay"), variant


# ---------------------------------------------------------------------- what each command prints
def test_pack_prints_one_line_or_one_object(capsys, files):
    rc, out, err = run(capsys, "pack", "--lengths", files / "lengths.txt", "--pack-len", 4096)
    assert rc == 0 and err == "" and out.count("\n") == 1
    assert re.match(r"bfd: 2 sequences -> 1 rows \(lower bound 1\), utilisation 75\.68%, 3100 real tokens in 4096 "
                    r"slots, [\d.]+ ms\n$", out)
    rc, out, _ = run(capsys, "pack", "--lengths", files / "lengths.txt", "--pack-len", 4096, "--json")
    obj = one_object(out)
    assert {"num_rows", "slots", "real_tokens", "pads", "lower_bound_rows", "utilization", "pack_len", "batch_size",
            "overlong", "seconds"} <= set(obj) and "rows" not in obj
    rc, out, _ = run(capsys, "pack", "--lengths", files / "lengths.txt", "--pack-len", 4096, "--json", "--rows")
    assert one_object(out)["rows"] == [[[1, 0, 3000], [0, 3000, 100]]]  # [sequence, offset, length]


def test_rows_needs_json(capsys, files):
    rc, out, err = run(capsys, "pack", "--lengths", files / "lengths.txt", "--pack-len", 4096, "--rows")
    assert rc == EXIT_BAD_INPUT and out == "" and err.count("\n") == 1 and "--rows" in err and "--json" in err


def test_flops_prints_the_same_object_with_or_without_json(capsys, files):
    argv = ["flops", "--lengths", files / "lengths.txt", "--batch-size", 2, "--pack-len", 4096]
    plain, with_json = (one_object(run(capsys, *argv, *extra)[1]) for extra in ((), ("--json",)))
    assert plain == with_json
    for way in ("useful", "padded", "padded-masked", "dense", "flex", "varlen"):
        assert set(plain[way]) == {"linear", "attention", "total"}
    assert {"wasted", "waste_fraction", "speedup", "shape", "layouts"} <= set(plain)
    assert plain["speedup"]["padded"] == 1.0


def test_figures_prints_one_object_and_has_no_json_option(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(plot, "standard_figures", lambda: {"one.png": lambda: plot.lines([1, 2], {"y": [1, 2]})})
    rc, out, err = run(capsys, "figures", "--out", tmp_path / "figs", "--dpi", 20)
    assert rc == 0 and err == ""
    assert one_object(out) == {"out": str(tmp_path / "figs"), "files": [str(tmp_path / "figs" / "one.png")]}
    assert (tmp_path / "figs" / "one.png").read_bytes()[:4] == b"\x89PNG"
    rc, out, err = run(capsys, "figures", "--out", tmp_path / "figs", "--json")
    assert rc == EXIT_BAD_INPUT and out == "" and err.count("\n") == 1 and "unrecognized arguments: --json" in err


BENCH = ["bench", "--smoke", "--no-progress", "--scenarios", "uniform", "--methods", "padded,dense"]


def test_bench_prints_the_table_or_one_object(capsys, tmp_path):
    rc, out, err = run(capsys, *BENCH, "--out", tmp_path / "a")
    assert rc == 0, err
    assert out.startswith("device:") and "\ncommit:" in out and "\nceiling:" in out
    assert "\nscenario  method" in out and "\nuniform   dense" in out
    assert out.rstrip().endswith(f"written: {tmp_path / 'a' / 'bench.json'}, {tmp_path / 'a' / 'bench.png'}")
    assert "matmul ceiling" in err  # its progress: standard error
    rc, out, err = run(capsys, *BENCH, "--out", tmp_path / "b", "--json")
    obj = one_object(out)
    assert {"status", "device", "model", "ceiling_tflops", "scenarios", "targets", "sanity", "json", "png"} <= set(obj)
    assert obj["status"] == "complete" and set(obj["scenarios"]["uniform"]) == {"padded", "dense"}


def test_serve_prints_a_summary_or_one_object_with_every_key_the_readme_names(capsys, section, files):
    listed = re.search(r"Its JSON object\s+holds (.*?), and more\.", section, flags=re.S).group(1)
    keys = set(re.findall(r"`([a-z0-9_]+)`", listed))
    assert {"policy", "ttft_s", "tpot_s", "e2e_s", "seconds"} <= keys
    rc, out, err = run(capsys, "serve", "--trace", files / "trace.csv", "--policy", "continuous", "--json")
    obj = one_object(out)
    assert rc == 0 and keys <= set(obj), keys - set(obj)
    for k in ("ttft_s", "tpot_s", "e2e_s"):
        assert {"p50", "p90", "p99"} <= set(obj[k])
    rc, out, err = run(capsys, "serve", "--trace", files / "trace.csv", "--policy", "continuous")
    assert rc == 0 and out.count("\n") > 3 and not out.lstrip().startswith("{")


def test_serve_execute_is_measured_and_says_how(capsys, section, files):
    listed = re.search(r"an `engine` object:(.*?)\. On a CPU", section, flags=re.S).group(1)
    keys = set(re.findall(r"`([a-z0-9_]+)`", listed))
    assert keys == {"attention", "cuda_graphs", "steps_graphed", "step_ms", "kv_layout"}
    rc, out, err = run(capsys, "serve", "--trace", files / "trace.csv", "--policy", "chunked", "--execute",
                       "--requests", 2, "--json")
    obj = one_object(out)
    assert rc == 0 and obj["clock"] == "executed" and obj["num_requests"] == 2
    assert keys <= set(obj["engine"])


# ---------------------------------------------------------------------- input, limits
def test_lengths_file_format_and_standard_input(files):
    p = run_process(shell=f"cut -d, -f2 {files / 'trace.csv'} | {sys.executable} -m packviz pack --lengths - "
                          "--pack-len 4096 --json")  # the README's pipeline: the header line, then integers
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["real_tokens"] == 374 + 396 + 20
    for source in ("-", "/dev/stdin"):
        p = run_process("pack", "--lengths", source, "--pack-len", 4096, "--json", stdin="# c\n\n5\n\n7\n")
        assert json.loads(p.stdout)["real_tokens"] == 12
    p = run_process(shell=f"{sys.executable} -m packviz pack --lengths <(echo 9) --pack-len 64 --json")
    assert json.loads(p.stdout)["real_tokens"] == 9
    p = run_process("pack", "--lengths", files / "trace.csv", "--pack-len", 4096, "--json")  # the CSV itself
    assert json.loads(p.stdout)["real_tokens"] == 374 + 396 + 20
    p = run_process("serve", "--trace", "-", "--policy", "static", "--json", stdin=CSV)
    assert json.loads(p.stdout)["num_requests"] == 3


def test_pack_len_goes_up_to_2_31_minus_1(capsys, files):
    rc, out, _ = run(capsys, "pack", "--lengths", files / "lengths.txt", "--pack-len", 2**31 - 1, "--json")
    assert rc == 0 and one_object(out)["pack_len"] == 2**31 - 1
    rc, out, err = run(capsys, "pack", "--lengths", files / "lengths.txt", "--pack-len", 2**31)
    assert rc == EXIT_BAD_INPUT and out == "" and "2,147,483,647" in err and err.count("\n") == 1


# ---------------------------------------------------------------------- exit statuses
@pytest.mark.parametrize("args", [
    ["pack", "--lengths", "{dir}/lengths.txt", "--pack-len", "0"],
    ["flops", "--lengths", "{dir}/lengths.txt", "--batch-size", "2", "--pack-len", "4096", "--model", "llama-5"],
    ["figures", "--out", "{dir}/lengths.txt"],                       # a file, not a directory
    ["bench", "--smoke", "--out", "{dir}/lengths.txt"],
    ["serve", "--trace", "{dir}/trace.csv", "--policy", "fifo"],
    ["serve", "--trace", "{dir}/missing.csv", "--policy", "static"],  # a file that cannot be read
    ["pack", "--lengths", "{dir}/lengths.txt"],                      # a missing option
    ["shuffle"],                                                     # no such command
], ids=["pack", "flops", "figures", "bench", "serve", "serve-missing-file", "missing-option", "no-command"])
def test_bad_input_is_status_2_and_one_line_in_a_real_process(files, args):
    p = run_process(*[a.format(dir=files) for a in args])
    assert p.returncode == EXIT_BAD_INPUT == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: ") and "Traceback" not in p.stderr


def test_a_reader_that_goes_away_is_status_141_and_quiet(tmp_path):
    f = tmp_path / "many.txt"
    f.write_text("\n".join(str(1 + i % 4000) for i in range(100_000)) + "\n")
    p = run_process(shell=f"{sys.executable} -m packviz pack --lengths {f} --pack-len 4096 --json --rows | head -c 10 "
                          "> /dev/null; echo rc=${PIPESTATUS[0]}")
    assert p.stdout.strip() == f"rc={EXIT_BROKEN_PIPE}" == "rc=141" and p.stderr == ""


def test_ctrl_c_is_status_130(files):
    code = ("import os, signal, sys; import packviz.lengths as L; from packviz.cli import main\n"
            "def interrupted(*a, **kw):\n    os.kill(os.getpid(), signal.SIGINT)\n    signal.pause()\n"
            "L.read_lengths = interrupted\n"
            f"sys.exit(main(['pack', '--lengths', {str(files / 'lengths.txt')!r}, '--pack-len', '64']))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == EXIT_INTERRUPTED == 130 and p.stdout == "" and p.stderr == ""


def test_a_bug_is_status_1_and_one_line_with_the_traceback_on_request(files):
    code = ("import sys; import packviz.packing as P; from packviz.cli import main\n"
            "def bug(*a, **kw):\n    raise ZeroDivisionError('a bug')\n"
            "P.pack = bug\n"
            f"sys.exit(main(['pack', '--lengths', {str(files / 'lengths.txt')!r}, '--pack-len', '64']))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and p.stdout == "" and p.stderr.count("\n") == 1
    assert p.stderr.startswith("error: internal error (ZeroDivisionError: a bug)") and "PACKVIZ_TRACEBACK=1" in p.stderr
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PACKVIZ_TRACEBACK": "1"})
    assert p.returncode == 1 and "Traceback" in p.stderr and "ZeroDivisionError: a bug" in p.stderr


def test_the_readme_names_these_statuses(section):
    for status in (0, 2, 141, 130, 1):
        assert f"- **{status}**:" in section
    assert "`tests/test_cli_readme.py`" in section


def test_serve_capacity_prints_one_line_or_one_object(capsys, tmp_path):
    """The README: "`serve --capacity` ... prints one line, or with `--json` one object"."""
    csv = tmp_path / "t.csv"
    csv.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"2023-11-16 18:15:{10 + i:02d}.0,{200 + 37 * i},{20 + 3 * i}\n" for i in range(12)))
    rc, out, err = run(capsys, "serve", "--trace", csv, "--config", "vllm-v1-like", "--capacity", "--slo-itl-p99", 0.1)
    assert rc == 0 and err == "" and out.count("\n") == 1 and out.startswith("vllm-v1-like: capacity ")
    rc, out, _ = run(capsys, "serve", "--trace", csv, "--config", "vllm-v1-like", "--capacity", "--json")
    obj = one_object(out)
    assert {"rate_scale", "requests_per_s", "output_tokens_per_s", "ttft_p99_s", "itl_p99_s", "slo", "evaluations",
            "note"} <= set(obj)
