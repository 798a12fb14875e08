"""Every command, every kind of bad input: exit status 2 and exactly one stderr line, ``error: ...``,
naming the bad value; nothing on stdout, never a traceback.

The table runs in-process (``packviz.cli.main``) so that it stays fast; the process-level rows
at the end (a closed pipe, standard input, the inputs that used to crash) run as a user runs them.
"""

import json
import subprocess
import sys

import pytest

from packviz.cli import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, main

FILES = {
    "ok": "100\n3000\n50\n",
    "big63": "100\n9223372036854775808\n",  # 2**63: one past int64
    "max63": "100\n9223372036854775807\n",
    "huge": "100\n99999999999999999999999\n",
    "neg": "100\n-3\n",
    "zero": "100\n0\n",
    "float": "100\n2.5\n",
    "two": "100\n10 20\n",
    "empty": "",
    "comments": "# nothing but a comment\n\n",
    "long": "1000000000000\n",
    "csv_nocol": "TIMESTAMP,Prompt\nt,10\n",
    "csv_bad": "TIMESTAMP,ContextTokens,GeneratedTokens\nt,x,1\n",
    "csv_short": "TIMESTAMP,GeneratedTokens,ContextTokens\nt,1\n",
    "heads0_json": json.dumps({"hidden_size": 64, "intermediate_size": 224, "num_hidden_layers": 2,
                               "num_attention_heads": 0, "vocab_size": 256}),
    "list_json": "[1, 2]",
    "bad_json": '{"hidden_size": 64,',
    "mistral_json": json.dumps({"model_type": "mistral", "hidden_size": 64}),
    "trace_ts": "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,10,1\n",
    "cal_points5_json": json.dumps({"schema": "packviz.serve-calibration/1", "points": 5}),
    "cal_broken_json": '{"schema": "packviz.serve-calibration/1",\n  "points": [1, 2,]}',
    "underscore": "100\n1_000\n",
    "arabic": "100\n\u0663\n",
    "csv_underscore": "TIMESTAMP,ContextTokens,GeneratedTokens\nt,1_000,1\n",
    "csv_arabic": "TIMESTAMP,ContextTokens,GeneratedTokens\nt,\u0663,1\n",
}

FLOPS = ["flops", "--lengths", "{ok}", "--batch-size", "2", "--pack-len", "4096"]
PACK = ["pack", "--lengths", "{ok}", "--pack-len", "4096"]
FIG = ["figures", "--out", "{out}"]
BENCH = ["bench", "--out", "{out}", "--smoke", "--no-progress"]
SERVE = ["serve", "--trace", "{trace}"]

# (argv, text the one stderr line must hold: the bad value, as given)
CASES = [
    ([], "required: command"),
    (["shuffle"], "invalid choice: 'shuffle'"),
    (PACK + ["--frobnicate"], "unrecognized arguments: --frobnicate"),
    # pack: options
    (["pack", "--pack-len", "4096"], "required: --lengths"),
    (["pack", "--lengths", "{ok}"], "required: --pack-len"),
    (["pack", "--lengths", "{ok}", "--pack-len", "abc"], "invalid int value: 'abc'"),
    (["pack", "--lengths", "{ok}", "--pack-len", "0"], "pack_len must be a positive integer, got 0"),
    (["pack", "--lengths", "{ok}", "--pack-len", "-5"], "got -5"),
    (["pack", "--lengths", "{ok}", "--pack-len", str(2**62)], f"pack_len is {2**62}, above the largest"),
    (["pack", "--lengths", "{ok}", "--pack-len", str(2**63 - 1)], f"pack_len is {2**63 - 1}"),
    (["pack", "--lengths", "{ok}", "--pack-len", "9" * 23], "9" * 23),
    (PACK + ["--strategy", "worst-fit"], "invalid choice: 'worst-fit'"),
    (PACK + ["--strategy", "pad"], "needs a batch_size"),
    (PACK + ["--strategy", "pad", "--batch-size", "0"], "batch_size must be a positive integer, got 0"),
    (PACK + ["--batch-size", "-2"], "batch_size must be a positive integer, got -2"),
    (PACK + ["--overlong", "drop"], "invalid choice: 'drop'"),
    (PACK + ["--rows"], "--rows adds the rows to the JSON output; add --json"),
    # pack: the lengths file
    (["pack", "--lengths", "{missing}", "--pack-len", "64"], "lengths file not found: {missing}"),
    (["pack", "--lengths", "{dir}", "--pack-len", "64"], "{dir} is a directory"),
    (["pack", "--lengths", "{big63}", "--pack-len", "64"], "line 2: 9223372036854775808 is too large"),
    (["pack", "--lengths", "{huge}", "--pack-len", "64"], "line 2: 99999999999999999999999 is too large"),
    (["pack", "--lengths", "{max63}", "--pack-len", "4096"], "length 9223372036854775807, longer than the pack length 4096"),
    (["pack", "--lengths", "{neg}", "--pack-len", "64"], "line 2: -3 is not a length"),
    (["pack", "--lengths", "{zero}", "--pack-len", "64"], "line 2: 0 is not a length"),
    (["pack", "--lengths", "{float}", "--pack-len", "64"], "line 2: '2.5' is not an integer length"),
    (["pack", "--lengths", "{two}", "--pack-len", "64"], "line 2: '10 20' is not an integer length"),
    (["pack", "--lengths", "{empty}", "--pack-len", "64"], "no lengths found"),
    (["pack", "--lengths", "{comments}", "--pack-len", "64"], "no lengths found"),
    (["pack", "--lengths", "{binary}", "--pack-len", "64"], "line 2: not UTF-8 text (byte 0x89)"),
    (["pack", "--lengths", "{csv_nocol}", "--pack-len", "64"], "has no 'ContextTokens' column"),
    (["pack", "--lengths", "{csv_bad}", "--pack-len", "64"], "line 2: 'x' is not an integer length"),
    (["pack", "--lengths", "{csv_short}", "--pack-len", "64"], "line 2: no 'ContextTokens' value"),
    (["pack", "--lengths", "{long}", "--pack-len", "1", "--overlong", "split"], "1,000,000,000,000 chunks"),
    (["pack", "--lengths", "{ok}", "--pack-len", "10"], "sequence 0 has length 100, longer than the pack length 10"),
    # flops
    (FLOPS + ["--model", "llama-5"], "unknown model 'llama-5'"),
    (FLOPS + ["--model", "{heads0_json}"], "{heads0_json}: num_attention_heads is 0"),
    (FLOPS + ["--model", "{list_json}"], "{list_json}: the JSON is a list, not an object"),
    (FLOPS + ["--model", "{bad_json}"], "{bad_json}: not valid JSON (line 1"),
    (FLOPS + ["--model", "{mistral_json}"], "model_type is 'mistral'"),
    (FLOPS + ["--model", "{dir}"], "the directory has no config.json"),
    (FLOPS + ["--tile", "abc"], "--tile must be BLOCK_Q,BLOCK_K (two positive integers, e.g. 128,128), got 'abc'"),
    (FLOPS + ["--tile", "0,128"], "got (0, 128)"),
    (FLOPS + ["--strategy", "pad"], "got 'pad'"),
    (FLOPS + ["--overlong", "drop"], "got 'drop'"),
    (FLOPS + ["--lm-head", "first"], "invalid choice: 'first'"),
    (FLOPS + ["--batch-size", "0"], "batch_size must be a positive integer, got 0"),
    (FLOPS + ["--pack-len", str(2**62)], f"pack_len is {2**62}"),
    (["flops", "--lengths", "{ok}", "--pack-len", "64"], "required: --batch-size"),
    (["flops", "--lengths", "{big63}", "--batch-size", "2", "--pack-len", "64"], "9223372036854775808"),
    # figures
    (FIG + ["--dpi", "0"], "--dpi must be an integer from 10 to 1,200, got 0"),
    (FIG + ["--dpi", "5"], "--dpi must be an integer from 10 to 1,200, got 5"),
    (FIG + ["--dpi", "100000"], "--dpi must be an integer from 10 to 1,200, got 100000"),
    (FIG + ["--dpi", "1.5"], "invalid int value: '1.5'"),
    (["figures", "--out", "{ok}"], "--out {ok} exists and is not a directory"),
    (["figures", "--out", "{ok}/sub"], "{ok}/sub"),
    (["figures"], "required: --out"),
    # bench: setup errors, one line each (not the backend table first)
    (BENCH + ["--model", "llama-5"], "unknown model 'llama-5'"),
    (BENCH + ["--dtype", "float8"], "unknown dtype 'float8'"),
    (BENCH + ["--device", "tpu"], "unknown device 'tpu'"),
    (BENCH + ["--checkpoint", "{missing}"], "{missing}"),
    (BENCH + ["--checkpoint", "{dir}"], "has no config.json"),
    (BENCH + ["--repeats", "0"], "repeats must be a positive integer, got 0"),
    (BENCH + ["--warmup", "-1"], "warmup must be an integer >= 0, got -1"),
    (BENCH + ["--trace-n", "0"], "trace_n must be a positive integer, got 0"),
    (BENCH + ["--scenarios", "online"], "got 'online'"),
    (BENCH + ["--methods", "paged"], "got 'paged'"),
    (BENCH + ["--deadline", "nan"], "deadline must be a finite number > 0, got nan"),
    (BENCH + ["--deadline", "-1"], "got -1.0"),
    (BENCH + ["--pack-len", "100000000"], "pack_len 100000000 exceeds the model's max_position_embeddings"),
    (BENCH + ["--batch-size", "many"], "invalid int value: 'many'"),
    (["bench", "--out", "{ok}", "--smoke"], "out '{ok}' exists and is not a directory"),
    # serve
    (SERVE + ["--policy", "fifo"], "got 'fifo'"),
    (SERVE + ["--policy", "static", "--max-batch", "0"], "--max-batch must be a positive integer, got 0"),
    (SERVE + ["--policy", "static", "--max-batch", "1e3"], "--max-batch must be an integer, got '1e3'"),
    (SERVE + ["--policy", "static", "--rate-scale", "nan"], "--rate-scale must be a finite number > 0, got nan"),
    (SERVE + ["--policy", "static", "--rate-scale", "-1"], "got -1.0"),
    (SERVE + ["--policy", "chunked", "--token-budget", "0"], "--token-budget must be a positive integer, got 0"),
    (SERVE + ["--policy", "static", "--kv-budget", "-5"], "got -5"),
    (SERVE + ["--policy", "static", "--gpu", "tpu-v5"], "unknown GPU 'tpu-v5'"),
    (SERVE + ["--policy", "static", "--gpu", "{list_json}"], "{list_json} is not a packviz calibration"),
    (SERVE + ["--policy", "static", "--arrivals", "never"], "got 'never'"),
    (SERVE + ["--policy", "static", "--padded-attention", "sparse"], "got 'sparse'"),
    (SERVE + ["--policy", "continuous", "--ragged-attention", "sparse"], "got 'sparse'"),
    (SERVE + ["--policy", "static", "--model", "{heads0_json}"], "num_attention_heads is 0"),
    (["serve", "--policy", "static", "--trace", "{ok}"], "{ok}: the CSV header ['100'] has no TIMESTAMP"),
    (["serve", "--policy", "static", "--trace", "{missing}"], "trace file not found: {missing}"),
    (["serve", "--policy", "static", "--trace", "{trace_ts}"], "line 2: TIMESTAMP 'yesterday'"),
    (["serve", "--trace", "{trace}"], "give --policy (static, static-packed, continuous or chunked) or --config"),
    # integers are ASCII digits (int() alone takes 1_000 and other scripts' digits), numbers ASCII too (issue 22)
    (["pack", "--lengths", "{ok}", "--pack-len", "4_096"], "invalid int value: '4_096' (an integer in ASCII digits"),
    (["pack", "--lengths", "{ok}", "--pack-len", "\u0664\u0660\u0669\u0666"], "invalid int value: '\u0664\u0660\u0669\u0666'"),
    (FLOPS + ["--batch-size", "\uff12"], "invalid int value: '\uff12'"),          # a full-width 2
    (FIG + ["--dpi", "1_50"], "invalid int value: '1_50'"),
    (BENCH + ["--repeats", "\u0663"], "invalid int value: '\u0663'"),
    (BENCH + ["--deadline", "1_0"], "invalid float value: '1_0'"),
    (SERVE + ["--policy", "static", "--max-batch", "3_2"], "--max-batch must be an integer, got '3_2'"),
    (SERVE + ["--policy", "static", "--max-batch", "100000000"], "--max-batch is 100000000, above the largest allowed"),
    (SERVE + ["--policy", "static", "--rate-scale", "1e-300"], "--rate-scale is 1e-300, outside 1e-06 .. 1e+06"),
    (SERVE + ["--policy", "chunked", "--token-budget", "\u0662\u0660\u0664\u0668"], "--token-budget must be an integer"),
    (SERVE + ["--policy", "static", "--kv-budget", "9" * 30], "--kv-budget is 999999999999999999999999999999"),
    (SERVE + ["--policy", "static", "--gpu", "{cal_points5_json}"], "{cal_points5_json}: points is 5"),
    # issue 23: ASCII digits everywhere (the --tile pair, lengths files plain and CSV, as trace CSVs already did)
    (FLOPS + ["--tile", "1_28,1_28"], "--tile must be BLOCK_Q,BLOCK_K (two positive integers, e.g. 128,128), got "
                                      "'1_28,1_28' (ASCII digits only)"),
    (FLOPS + ["--tile", "\u0661\u0662\u0668,\u0661\u0662\u0668"], "got '\u0661\u0662\u0668,\u0661\u0662\u0668' (ASCII digits only)"),
    (FLOPS + ["--tile", "128,128,128"], "got '128,128,128'"),
    (["pack", "--lengths", "{underscore}", "--pack-len", "4096"], "line 2: '1_000' is not an integer length (ASCII digits"),
    (["pack", "--lengths", "{arabic}", "--pack-len", "4096"], "line 2: '\u0663' is not an integer length"),
    (["pack", "--lengths", "{csv_underscore}", "--pack-len", "4096"], "line 2: '1_000' is not an integer length"),
    (["pack", "--lengths", "{csv_arabic}", "--pack-len", "4096"], "line 2: '\u0663' is not an integer length"),
    (FLOPS[:2] + ["{underscore}"] + FLOPS[3:], "line 2: '1_000' is not an integer length"),
    # issue 23: offline has no rate to scale; flags named as typed; the calibration's JSON error placed
    (SERVE + ["--policy", "static", "--arrivals", "offline", "--rate-scale", "2"],
     "--arrivals offline sends every request at t = 0: a rate scale needs --arrivals trace"),
    (SERVE + ["--policy", "static", "--kv-budget", "1"], "432 in whole pages of 16"),
    (SERVE + ["--policy", "static", "--padded-attention", "sparse"], "--padded-attention must be one of"),
    (SERVE + ["--policy", "static", "--gpu", "{cal_broken_json}"],
     "{cal_broken_json} is not valid JSON (line 2, column 19: Expecting value)"),
]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    out = {name: d / name.replace("_json", ".json") for name in FILES}
    for name, text in FILES.items():
        out[name].write_text(text)
    (d / "binary").write_bytes(b"100\n\x89PNG\n")
    (d / "a-dir").mkdir()
    (d / "trace.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                 "2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:50.99,396,109\n")
    out.update(binary=d / "binary", dir=d / "a-dir", missing=d / "no-such-file", trace=d / "trace.csv")
    return out


def _fill(text: str, paths: dict, out_dir) -> str:
    return text.format(out=out_dir, **{k: str(v) for k, v in paths.items()})


def run_in_process(capsys, argv):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("argv, shown", CASES, ids=[" ".join(a)[:70] or "(nothing)" for a, _ in CASES])
def test_bad_invocation_is_one_line_naming_the_value(capsys, paths, tmp_path, argv, shown):
    argv = [_fill(a, paths, tmp_path / "out") for a in argv]
    rc, out, err = run_in_process(capsys, argv)
    lines = err.splitlines()
    assert rc == EXIT_BAD_INPUT, (rc, err)
    assert out == ""
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert _fill(shown, paths, tmp_path / "out") in lines[0]
    assert "Traceback" not in err


def test_figures_refuses_a_bad_dpi_before_creating_anything(capsys, tmp_path):
    for dpi in ("0", "100000"):
        rc, _, _ = run_in_process(capsys, ["figures", "--out", str(tmp_path / "figs"), "--dpi", dpi])
        assert rc == EXIT_BAD_INPUT and not (tmp_path / "figs").exists()


def test_bench_setup_error_leaves_a_final_status(capsys, tmp_path):
    rc, _, err = run_in_process(capsys, BENCH[:2] + [str(tmp_path), "--smoke", "--model", "llama-5"])
    assert rc == EXIT_BAD_INPUT and len(err.splitlines()) == 1
    record = json.loads((tmp_path / "bench.json").read_text())
    assert record["status"].startswith("failed: ValueError: unknown model 'llama-5'")
    assert record["errors"][-1]["error"] == record["status"]


@pytest.mark.parametrize("error, rc, shown", [
    (TypeError("unexpected\nin two lines"), 1, "error: internal error (TypeError: unexpected in two lines); please report"),
    (MemoryError(), 1, "error: out of memory"),
    (KeyboardInterrupt(), 130, None),
])
def test_what_is_not_bad_input_is_still_at_most_one_line(capsys, paths, monkeypatch, error, rc, shown):
    import packviz.packing

    def boom(*a, **kw):
        raise error

    monkeypatch.setattr(packviz.packing, "pack", boom)
    got, out, err = run_in_process(capsys, ["pack", "--lengths", str(paths["ok"]), "--pack-len", "64"])
    assert got == rc and out == ""
    assert (err == "") if shown is None else (err.count("\n") == 1 and err.startswith(shown))


# ---------------------------------------------------------------------- as a user runs it
def run_process(*args, stdin=None, shell=None):
    cmd = ["bash", "-c", shell] if shell else [sys.executable, "-m", "packviz", *map(str, args)]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, shown", [
    (["pack", "--lengths", "{ok}", "--pack-len", str(2**62)], "pack_len is 4611686018427387904"),
    (["pack", "--lengths", "{big63}", "--pack-len", "64"], "9223372036854775808 is too large"),
    (["pack", "--lengths", "{ok}", "--pack-len", "4096", "--rows"], "--rows"),
    (["figures", "--out", "{out}", "--dpi", "100000"], "100000"),
], ids=["pack-len 2**62", "length 2**63", "rows without json", "dpi 100000"])
def test_inputs_that_used_to_crash_are_one_line_in_a_real_process(paths, tmp_path, args, shown):
    p = run_process(*[_fill(a, paths, tmp_path / "figs") for a in args])
    assert p.returncode == EXIT_BAD_INPUT and p.stdout == ""
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: ") and shown in p.stderr


def test_a_closed_pipe_ends_quietly(tmp_path):
    f = tmp_path / "many.txt"
    f.write_text("\n".join(str(1 + i % 4000) for i in range(200_000)) + "\n")
    cmd = (f"{sys.executable} -m packviz pack --lengths {f} --pack-len 4096 --json --rows | head -c 100 > /dev/null;"
           " echo rc=${PIPESTATUS[0]}")
    p = run_process(shell=cmd)
    assert p.stdout.strip() == f"rc={EXIT_BROKEN_PIPE}" and p.stderr == ""


@pytest.mark.parametrize("source", ["-", "/dev/stdin"])
def test_lengths_from_standard_input(source):
    p = run_process("pack", "--lengths", source, "--pack-len", "4096", "--json", stdin="# two\n100\n3000\n")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["real_tokens"] == 3100


def test_lengths_from_a_process_substitution(paths):
    p = run_process(shell=f"{sys.executable} -m packviz pack --lengths <(cat {paths['ok']}) --pack-len 4096 --json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["num_sequences"] == 3


def test_a_bad_line_on_standard_input_is_named():
    p = run_process("pack", "--lengths", "-", "--pack-len", "64", stdin="10\nten\n")
    assert p.returncode == EXIT_BAD_INPUT and p.stderr == "error: <stdin>, line 2: 'ten' is not an integer length (ASCII digits, e.g. 512)\n"


def test_trace_from_standard_input(paths):
    p = run_process("serve", "--trace", "-", "--policy", "static", "--json", stdin=paths["trace"].read_text())
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["num_requests"] == 2
