"""``packviz replay``: recorded events -> the summary (pure), the client against a scripted server, the command's
errors, and (``PACKVIZ_SERVER_TEST=1``) a real ``transformers serve`` on 127.0.0.1 with a tiny local model."""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from packviz.cli import main
from packviz.serving.metrics import summary
from packviz import plot_replay
from packviz.serving.replay import (RequestRecord, format_replay, from_json, goodput, http_error_line, payload,
                                    read_chunk, replay, replay_summary, result_from_records, to_json)
from packviz.trace import Trace

ROOT = pathlib.Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------- events -> summary
def _asked():
    return Trace(np.array([0.0, 0.2, 0.4, 0.6]), np.array([10, 20, 30, 40]), np.array([4, 3, 5, 2]), name="hand")


def _records():
    return [RequestRecord(0, 0.0, 0.001, [0.101, 0.121, 0.151, 0.201], tokens=4, prompt_tokens=10, end_s=0.21),
            RequestRecord(1, 0.2, 0.2, [0.5, 0.6], tokens=2, prompt_tokens=20, finish_reason="stop", end_s=0.61),
            RequestRecord(2, 0.4, 0.4, [0.45, 0.46, 0.48, 0.5, 0.9], tokens=5, prompt_tokens=31, end_s=0.9),
            RequestRecord(3, 0.6, 0.6, error="HTTP 500: boom", end_s=0.7)]


def test_the_summary_follows_from_the_recorded_events():
    r = result_from_records(_asked(), _records(), url="http://x", model="m", dialect="plain")
    s = replay_summary(r)
    ttft = [0.101 - 0.001, 0.5 - 0.2, 0.45 - 0.4]
    assert s["num_requests"] == s["completed"] == 3 and s["replay"]["requests_failed"] == 1
    assert s["ttft_s"]["p50"] == pytest.approx(np.percentile(ttft, 50))
    assert s["tpot_s"]["p50"] == pytest.approx(np.percentile([0.1 / 3, 0.1 / 1, 0.45 / 4], 50))
    gaps = [0.02, 0.03, 0.05, 0.1, 0.01, 0.02, 0.02, 0.4]
    itl = np.sort(gaps)
    assert s["itl_s"]["p50"] == pytest.approx(itl[int(np.ceil(0.5 * len(itl))) - 1])    # the weighted p50: a sample
    assert s["makespan_s"] == pytest.approx(0.9 - 0.001)
    assert s["output_tokens_per_s"] == pytest.approx((4 + 2 + 5) / (0.9 - 0.001))
    assert s["prompt_tokens"] == 10 + 20 + 31                      # as the server counted them
    assert s["replay"]["ended_early"] == 1 and s["replay"]["ended_early_requests"] == [1]
    assert s["replay"]["prompt_count_mismatches"] == 1
    assert s["replay"]["errors"] == {"HTTP 500: boom": 1}
    assert s["replay"]["tokens_per_event"] == pytest.approx(1.0)
    assert s["mfu"] is None and s["gpu_busy_fraction"] is None and s["queue_s"]["p50"] is None


def test_goodput_counts_requests_that_meet_both_slos():
    r = result_from_records(_asked(), _records())
    g = goodput(r, slo_ttft_s=0.2, slo_tpot_s=0.05)                 # only request 0 (TTFT 0.1, TPOT 0.033)
    assert g["good"] == 1 and g["fraction"] == 0.25
    assert g["requests_per_s"] == pytest.approx(1 / (0.9 - 0.001))
    assert goodput(r, slo_ttft_s=1.0, slo_tpot_s=1.0)["good"] == 3   # the failed request never counts


def test_no_token_at_all_is_one_clear_error():
    recs = [RequestRecord(0, 0.0, 0.0, error="HTTP 404: no such model"), RequestRecord(1, 0.2, 0.2)]
    with pytest.raises(ValueError, match="no request received a token: 1 x HTTP 404: no such model; "
                                         "1 x no token received"):
        result_from_records(_asked(), recs)


def test_a_recorded_replay_round_trips_through_json():
    r = result_from_records(_asked(), _records(), url="http://x", model="m", dialect="token-ids", seconds=1.5)
    d = json.loads(json.dumps(to_json(r, label="hand-built")))
    assert d["label"] == "hand-built" and d["kind"] == "packviz replay"
    back = replay_summary(from_json(d))
    assert back == d["summary"] == replay_summary(r)


def test_stream_chunks_vllm_and_transformers_style():
    rec = RequestRecord(0, 0.0, 0.0)
    assert read_chunk(rec, ": ping", 0.05) and read_chunk(rec, "", 0.06)
    read_chunk(rec, 'data: {"choices": [{"text": "Hi", "finish_reason": null}]}', 0.1)
    read_chunk(rec, 'data: {"choices": [{"text": "", "finish_reason": null}]}', 0.2)      # a special token
    read_chunk(rec, 'data: {"choices": [{"text": " there", "finish_reason": "length"}]}', 0.3)
    read_chunk(rec, 'data: {"choices": [{"text": "", "finish_reason": "length"}]}', 0.4)  # only the end marker
    read_chunk(rec, 'data: {"choices": [], "usage": {"completion_tokens": 3, "prompt_tokens": 7}}', 0.5)
    assert rec.events_s == [0.1, 0.2, 0.3] and rec.finish_reason == "length"
    assert (rec.tokens, rec.prompt_tokens, rec.received) == (3, 7, 3)
    assert read_chunk(rec, "data: [DONE]", 0.6) is False
    bad = RequestRecord(1, 0.0, 0.0)
    assert read_chunk(bad, 'data: {"error": "CUDA out of\\nmemory"}', 0.1) is False
    assert bad.error == "stream error: CUDA out of memory"


def test_request_forms_and_error_lines():
    assert payload("m", [1, 2], 5, "token-ids")["ignore_eos"] is True
    assert json.loads(payload("m", "a b", 5, "no-eos-token")["generation_config"]) == {"eos_token_id": []}
    plain = payload("m", "a b", 5, "plain")
    assert plain["max_tokens"] == 5 and plain["stream"] and "ignore_eos" not in plain
    assert http_error_line(404, b'{"error": {"message": "The model `x` does\\nnot exist."}}') == \
        "HTTP 404: The model `x` does not exist."
    assert http_error_line(502, b"<html>bad gateway</html>") == "HTTP 502: <html>bad gateway</html>"


# ---------------------------------------------------------------------- the client against a scripted server
class _Scripted(BaseHTTPRequestHandler):
    """A stand-in server: serves model "fake"; text prompts only, no ignore_eos nor generation_config;
    max_tokens 13 -> HTTP 500, 17 -> silent for 3 s (a timeout), 11 -> the server's ``bad_chunk`` line first,
    19 -> one chunk, then silent until the server's ``release`` is set (30 s at most), otherwise max_tokens
    chunks 5 ms apart. ``server.models``: the body of GET /v1/models in place of the model list;
    ``server.posts``: the max_tokens of every POST."""

    def log_message(self, *a):
        pass

    def _json(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.server.models is None:
            return self._json(200, {"object": "list", "data": [{"id": "fake"}]})
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.server.models)))
        self.end_headers()
        self.wfile.write(self.server.models)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body["model"] != "fake":
            return self._json(404, {"detail": f"model {body['model']} not found"})
        if not isinstance(body["prompt"], str):
            return self._json(400, {"detail": "prompt must be a string."})
        if {"ignore_eos", "generation_config"} & set(body):
            return self._json(422, {"detail": f"Unexpected fields in the request: {set(body) - {'model'}}"})
        self.server.posts.append(body["max_tokens"])
        if body["max_tokens"] == 13:
            return self._json(500, {"detail": "boom"})
        if body["max_tokens"] == 17:
            time.sleep(3)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        usage = {"completion_tokens": body["max_tokens"], "prompt_tokens": len(body["prompt"].split()) + 1}
        try:
            if body["max_tokens"] == 11:
                self.wfile.write(self.server.bad_chunk + b"\n\n")
            if body["max_tokens"] == 19:
                self.wfile.write(b'data: {"choices": [{"text": " w", "finish_reason": null}]}\n\n')
                self.wfile.flush()
                self.server.release.wait(30)
            for _ in range(body["max_tokens"]):
                self.wfile.write(b'data: {"choices": [{"text": " w", "finish_reason": null}]}\n\n')
                self.wfile.flush()
                time.sleep(0.005)
            self.wfile.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode())
        except (BrokenPipeError, ConnectionResetError):      # the client gave up (its timeout)
            pass


@pytest.fixture()
def stub():
    """The scripted server on 127.0.0.1 (a free port), its ``models`` / ``bad_chunk`` / ``posts`` to set and read."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    server.daemon_threads = True
    server.models, server.bad_chunk, server.posts, server.release = None, b"", [], threading.Event()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture()
def scripted(stub):
    return stub.url + "/v1"


def test_failed_requests_are_counted_and_never_stall_the_replay(scripted):
    asked = Trace(np.array([0.0, 0.05, 0.1, 0.15]), np.array([6, 9, 4, 5]), np.array([5, 13, 17, 3]))
    t0 = time.perf_counter()
    r = replay(scripted, "fake", asked, timeout_s=0.5, progress=False)
    s = replay_summary(r)
    assert time.perf_counter() - t0 < 2.5                        # the 3 s hang is cut at the 0.5 s timeout
    assert r.dialect == "plain" and s["replay"]["requests_sent"] == 4 and s["completed"] == 2
    assert s["replay"]["errors"] == {"HTTP 500: boom": 1, "timeout (ReadTimeout): no answer within the --timeout": 1}
    assert r.trace.generated_tokens.tolist() == [5, 3]
    assert r.trace.prompt_tokens.tolist() == [6, 5]               # the probe saw the added token and made room
    for rec in r.records:
        assert rec.sent_s >= rec.scheduled_s and np.all(np.diff([rec.sent_s, *rec.events_s, rec.end_s]) >= 0)


def _cli(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:                                   # argparse's own errors (one line too)
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_errors_in_one_line(scripted, tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    base = ["replay", "--requests", "3", "--no-progress", "--predict", "none"]
    code, _, err = _cli([*base, "--url", f"http://127.0.0.1:{dead}", "--model", "fake"], capsys)
    assert code == 2 and err.startswith(f"error: cannot reach http://127.0.0.1:{dead}") and err.count("\n") == 1
    code, _, err = _cli([*base, "--url", scripted, "--model", "llama"], capsys)
    assert code == 2 and err == f"error: --model 'llama' is not served at {scripted[:-3]}; it serves fake\n"
    code, _, err = _cli([*base, "--url", scripted, "--model", "fake", "--predict", "fastest"], capsys)
    assert code == 2 and err.startswith("error: --predict must be one of") and "'fastest'" in err
    code, _, err = _cli([*base, "--url", "localhost:8000", "--model", "fake"], capsys)
    assert code == 2 and "--url must start with http://" in err


def test_the_command_prints_the_replay_beside_the_prediction(scripted, tmp_path, capsys):
    csv = tmp_path / "t.csv"
    csv.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.0,40,6\n"
                   "2023-11-16 18:15:46.1,20,4\n2023-11-16 18:15:46.3,30,5\n")
    out = tmp_path / "rec" / "replay.json"
    code, text, err = _cli(["replay", "--url", scripted, "--model", "fake", "--trace", str(csv), "--requests", "3",
                            "--no-progress", "--out", str(out), "--label", "scripted"], capsys)
    assert code == 0, err
    assert "completed:  3 in" in text and "\npredicted " in text and "\nmeasured " in text
    rec = json.loads(out.read_text())
    assert rec["label"] == "scripted" and rec["summary"]["generated_tokens"] == 15 and rec["prediction"]["completed"] == 3
    assert rec["command"].startswith("python -m packviz ") and "versions" in rec


# ---------------------------------------------------------------------- what a reviewer found: one line each
HTML = b"<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head><body>" + b"x" * 100 + b"</body></html>"

BAD_COMMAND_LINES = [  # (argv after the base, GET /v1/models body or None, the error line: a regex)
    (["--url", "http://127.0.0.1:99999"], None,
     r"--url 'http://127\.0\.0\.1:99999' has port 99999: a port must be 1 to 65535 \(e\.g\. http://127\.0\.0\.1:8000\)"),
    (["--url", "http://[::1"], None, r"--url 'http://\[::1' is not a valid URL \(Invalid IPv6 URL\); give http://host"),
    (["--url", "http://127.0.0.1:9 bad"], None, r"--url 'http://127\.0\.0\.1:9 bad' has a space or control character"),
    (["--url", "http://::1:8000"], None, r"is not http://host:port\[/path\] .*in brackets: http://\[::1\]:8000"),
    (["--url", "{url}"], b'{"data":[1,2]}', r"http://127\.0\.0\.1:\d+ did not answer like an OpenAI-compatible "
                                             r"server: GET /v1/models returned '\{\"data\":\[1,2\]\}', not"),
    (["--url", "{url}"], b"[1,2]", r"did not answer like an OpenAI-compatible server: GET /v1/models returned '\[1,2\]'"),
    (["--url", "{url}"], HTML, r"did not answer like an OpenAI-compatible server: GET /v1/models returned "
                               r"'<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head><body>x+'\.\.\., "
                               r'not \{"data": \[\{"id": \.\.\.\}\]\}; check --url'),
    (["--url", "{url}", "--requests", "1_000"], None, r"argument --requests: invalid int value: '1_000' \(an integer in"),
    (["--url", "{url}", "--requests", "\u0663"], None, r"argument --requests: invalid int value: '\u0663'"),
    (["--url", "{url}", "--rate-scale", "1_0"], None, r"argument --rate-scale: invalid float value: '1_0'"),
    (["--url", "{url}", "--seed", "-1"], None, r"--seed must be an integer >= 0, got -1"),
    (["--url", "{url}", "--timeout", "0"], None, r"--timeout must be a number of seconds > 0 and at most 86,400 "
                                                 r"\(e\.g\. 300\), got 0$"),
    (["--url", "{url}", "--timeout", "-5"], None, r"--timeout must be a number of seconds > 0 .*, got -5$"),
    (["--url", "{url}", "--timeout", "nan"], None, r"--timeout must be a number of seconds > 0 .*, got nan$"),
    (["--url", "{url}", "--out", "/proc/x/y.json"], None,
     r"--out /proc/x/y\.json cannot be written \(No such file or directory\); give a file in a writable folder"),
    (["--url", "{url}", "--concurrency", "-1"], None, r"--concurrency must be a positive integer, got -1$"),
    (["--url", "{url}", "--concurrency", "0"], None, r"--concurrency must be a positive integer, got 0$"),
    (["--url", "{url}", "--concurrency", "99999999999999999999"], None,
     r"--concurrency is 99999999999999999999, above the largest allowed value 100,000$"),
    (["--url", "{url}", "--arrivals", "offline", "--rate-scale", "2"], None,
     r"--rate-scale 2 means nothing with --arrivals offline, which sends every request at t = 0; drop --rate-scale"),
    (["--url", "{url}", "--arrivals", "poisson"], None, r"argument --arrivals: invalid choice: 'poisson'"),
]


@pytest.mark.parametrize("argv, models, error", BAD_COMMAND_LINES, ids=[" ".join(a[2:]) or a[1] if a[1] != "{url}"
                                                                         else f"models {m!r:.20}" if m else " ".join(a[2:])
                                                                         for a, m, _ in BAD_COMMAND_LINES])
def test_a_bad_command_line_is_one_error_line_and_sends_nothing(stub, argv, models, error, capsys):
    stub.models = models
    argv = [a.replace("{url}", stub.url) for a in argv]
    code, _, err = _cli(["replay", "--model", "fake", "--requests", "3", "--no-progress", "--predict", "none", *argv],
                        capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "internal error" not in err and re.search(error, err.rstrip("\n").removesuffix(
        " (see python -m packviz replay --help)")), err
    assert stub.posts == []                                   # refused before a single request was sent


MALFORMED_CHUNKS = [  # (the line request 1 receives first, the start of its error)
    (b'data: {"choices": ["x"]}', 'malformed stream chunk: {"choices": ["x"]} (expected {"choices": [{"text": ...}]})'),
    (b"data: [1, 2]", "malformed stream chunk: [1, 2] (expected"),
    (b"data: <html>oops</html>", "malformed stream chunk: <html>oops</html> (expected"),
    (b'data: {"choices": "x"}', 'malformed stream chunk: {"choices": "x"} (expected'),
    (b'data: {"choices": [], "usage": {"completion_tokens": "3"}}', "malformed stream chunk: {\"choices\": [], \"usage\""),
    (b'data: {"choices": [{"text": "a"}], "usage": [1]}', "malformed stream chunk: "),
    (b'data: {"choices": [null]}', "malformed stream chunk: "),
]


@pytest.mark.parametrize("chunk, error", MALFORMED_CHUNKS, ids=[c.decode()[6:30] for c, _ in MALFORMED_CHUNKS])
def test_a_malformed_chunk_fails_its_request_only(stub, chunk, error):
    stub.bad_chunk = chunk
    asked = Trace(np.array([0.0, 0.02, 0.04]), np.array([6, 6, 6]), np.array([4, 11, 3]))
    t0 = time.perf_counter()
    r = replay(stub.url, "fake", asked, timeout_s=5.0, progress=False)
    assert time.perf_counter() - t0 < 3.0                     # never waits for the bad stream's timeout
    s = replay_summary(r)
    assert s["completed"] == 2 and s["replay"]["requests_sent"] == 3 and r.trace.generated_tokens.tolist() == [4, 3]
    (line, n), = s["replay"]["errors"].items()
    assert n == 1 and line.startswith(error) and "\n" not in line and len(line) < 200, line
    assert f"error:      1 x {line}" in format_replay(s)


def _two_runs():
    r = result_from_records(_asked(), _records(), url="http://x", model="m", dialect="plain")
    return r, r


LIBRARY_ERRORS = [  # (the call, the exception, its message: a regex)
    (lambda: goodput(None), TypeError, r"^r must be a SimResult \(what replay, simulate or an engine run returns\); "
                                       r"got NoneType None$"),
    (lambda: to_json(None), TypeError, r"^r must be a ReplayResult \(what replay or load_replay returns\); got NoneType"),
    (lambda: replay_summary(None), TypeError, r"^r must be a ReplayResult"),
    (lambda: from_json(None), TypeError, r"^d must be a dict as to_json writes it"),
    (lambda: plot_replay.replay_vs_prediction(None, None), TypeError, r"^result must be a ReplayResult .*; got NoneType"),
    (lambda: plot_replay.latency_cdf(None, None), TypeError, r"^result must be a ReplayResult"),
    (lambda: plot_replay.replay_vs_prediction(_two_runs()[0], None), TypeError,
     r"^predicted must be a SimResult \(what simulate returns for the same requests\); got NoneType"),
    (lambda: plot_replay.latency_cdf(*_two_runs(), key="ttft"), ValueError, r"^key must be one of 'ttft_s', 'tpot_s'"),
    (lambda: replay("http://127.0.0.1:99999", "fake", _asked()), ValueError, r"has port 99999: a port must be 1 to"),
    (lambda: replay("http://127.0.0.1:9", "fake", _asked(), arrivals="offline", rate_scale=2.0), ValueError,
     r"^rate_scale .*arrivals='offline' .*sends every request at t = 0"),
    (lambda: replay("http://127.0.0.1:9", "fake", _asked(), timeout_s=float("nan")), ValueError,
     r"^timeout_s must be a finite number > 0, got nan$"),
    (lambda: replay("http://127.0.0.1:9", "fake", _asked(), concurrency=10**20), ValueError,
     r"^concurrency is 100000000000000000000, above the largest allowed value 100,000$"),
    (lambda: replay("http://127.0.0.1:9", "", _asked()), ValueError, r"^--model must be the name of a model"),
]


@pytest.mark.parametrize("call, exc, message", LIBRARY_ERRORS, ids=[m[1:40] for _, _, m in LIBRARY_ERRORS])
def test_the_library_names_the_bad_argument(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_an_out_file_that_fails_at_the_end_still_prints_the_summary(scripted, tmp_path, capsys, monkeypatch):
    out = tmp_path / "replay.json"

    def full_disk(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
    code, text, err = _cli(["replay", "--url", scripted, "--model", "fake", "--requests", "2", "--no-progress",
                            "--predict", "none", "--out", str(out)], capsys)
    assert code == 2 and "completed:  2 in" in text and not out.exists()
    assert err == (f"error: --out {out} could not be written (No space left on device); the summary printed is all "
                   "that is kept of this replay\n")


def test_ctrl_c_prints_and_writes_what_was_measured_and_exits_130(stub, tmp_path):
    csv = tmp_path / "t.csv"                                  # request 0 completes; 1 and 2 stall after a token
    csv.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.0,6,3\n"
                   "2023-11-16 18:15:46.05,6,19\n2023-11-16 18:15:46.1,6,19\n")
    out = tmp_path / "rec" / "replay.json"
    proc = subprocess.Popen([sys.executable, "-m", "packviz", "replay", "--url", stub.url, "--model", "fake",
                             "--trace", str(csv), "--requests", "3", "--no-progress", "--predict", "none",
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while stub.posts.count(19) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)                                           # the stalled requests' first chunks reach the client
    proc.send_signal(signal.SIGINT)
    text, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "INTERRUPTED, partial" in text and "completed:  1 in" in text and f"written: {out}" in text, text
    assert "error:      2 x interrupted (Ctrl-C) before its last token" in text and "Traceback" not in err
    rec = json.loads(out.read_text())
    assert rec["summary"]["replay"]["interrupted"] is True and rec["summary"]["completed"] == 1
    assert rec["summary"]["replay"]["errors"] == {"interrupted (Ctrl-C) before its last token": 2}


# ---------------------------------------------------------------------- a real server (slow: make test-server)
WORDS = ("the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "he", "was", "for", "on", "are", "with", "as",
         "his", "they", "be")


def build_tiny_server_model(out: pathlib.Path) -> pathlib.Path:
    """A random 2-layer Llama and a WordLevel tokenizer over the prompt words, saved to ``out`` (no download).
    The lm_head rows of the special tokens are zero, so greedy decoding emits words only."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                            eos_token="</s>").save_pretrained(out)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192, bos_token_id=1,
                      eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        model.lm_head.weight[:3] = 0.0
    model.save_pretrained(out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_transformers_serve(model_dir, port: int, log, ready_s: float = 240.0) -> subprocess.Popen:
    """``transformers serve`` (continuous batching, CPU) on 127.0.0.1:port; returns once /health answers."""
    import httpx

    exe = pathlib.Path(sys.executable).with_name("transformers")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(exe), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu", "--continuous-batching"], stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"transformers serve did not answer within {ready_s:g} s")


@pytest.mark.skipif(not os.environ.get("PACKVIZ_SERVER_TEST"),
                    reason="starts a real server (~1-2 min on 2 cores): make test-server (PACKVIZ_SERVER_TEST=1)")
def test_a_replay_against_a_real_transformers_server(tmp_path, capsys):
    pytest.importorskip("fastapi", reason="needs transformers[serving]")
    model = build_tiny_server_model(tmp_path / "tiny")
    csv = tmp_path / "t.csv"
    rng = np.random.default_rng(1)
    rows = [f"2023-11-16 18:15:{46 + 0.25 * i:07.4f},{rng.integers(4, 200)},{rng.integers(2, 40)}" for i in range(12)]
    csv.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    port = free_port()
    with open(tmp_path / "server.log", "wb") as log:
        proc = start_transformers_serve(model, port, log)
        url = f"http://127.0.0.1:{port}"
        try:
            code, text, err = _cli(["replay", "--url", url, "--model", str(model), "--trace", str(csv), "--requests",
                                    "12", "--no-progress", "--out", str(tmp_path / "replay.json"), "--timeout", "60"],
                                   capsys)
        finally:
            proc.terminate()
            proc.wait(30)
    assert code == 0, err
    rec = json.loads((tmp_path / "replay.json").read_text())
    r = from_json(rec)
    asked = r.asked
    assert len(r.records) == 12 and r.errors == {} and r.dialect == "no-eos-token"
    assert [x.tokens for x in r.records] == asked.generated_tokens.tolist()       # EOS ignored: every G exactly
    assert [x.prompt_tokens for x in r.records] == asked.prompt_tokens.tolist()   # text prompts, counted by the server
    for x in r.records:
        times = [x.sent_s, *x.events_s, x.end_s]
        assert np.all(np.diff(times) >= 0) and 1 <= len(x.events_s) <= x.tokens
    s = summary(r)
    first = np.array([x.events_s[0] - x.sent_s for x in r.records])
    assert s["ttft_s"]["p50"] == pytest.approx(np.percentile(first, 50))
    span = max(x.events_s[-1] for x in r.records) - min(x.sent_s for x in r.records)
    assert s["output_tokens_per_s"] == pytest.approx(asked.generated_tokens.sum() / span)
    assert rec["summary"]["generated_tokens"] == int(asked.generated_tokens.sum())
