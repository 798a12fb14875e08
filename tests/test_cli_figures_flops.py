"""``python -m packviz flops`` and ``python -m packviz figures``."""

import json
import pathlib

import pytest

from packviz.cli import main
from packviz.shapes import MODELS

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def seed_file(tmp_path):
    p = tmp_path / "lengths.txt"
    p.write_text("50\n4000\n")
    return p


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_flops_json_seed_case_by_hand(capsys, seed_file):
    rc, out, err = _run(capsys, "flops", "--model", "llama-3-8b", "--lengths", seed_file,
                        "--batch-size", 2, "--pack-len", 4096, "--json")
    assert rc == 0, err
    r = json.loads(out)
    pair = 4 * 32 * 128 * 32  # heads * head_dim * layers, QK^T + AV
    # padded: 2 rows of 4000 slots, each its full 4000 x 4000 square
    assert r["padded"]["attention"] == 2 * (4000 * 4001 // 2) * pair  # causal, no mask
    assert r["padded-masked"]["attention"] == 2 * 4000 ** 2 * pair
    # dense pack: one 4096 x 4096 square; varlen and useful: the two triangles
    assert r["dense"]["attention"] == 4096 ** 2 * pair
    assert r["varlen"]["attention"] == r["useful"]["attention"] == (50 * 51 // 2 + 4000 * 4001 // 2) * pair
    per_token = 2 * MODELS["llama-3-8b"].params()  # lm_head on every token
    assert r["padded"]["linear"] == 8000 * per_token and r["dense"]["linear"] == 4096 * per_token
    assert r["varlen"]["linear"] == 4050 * per_token
    for k in ("useful", "padded", "dense", "varlen"):
        assert r[k]["total"] == r[k]["linear"] + r[k]["attention"]
    assert r["wasted"]["padded"]["total"] == r["padded"]["total"] - r["useful"]["total"]
    assert r["speedup"]["dense"] == pytest.approx(r["padded"]["total"] / r["dense"]["total"])
    assert r["speedup"]["varlen"] == pytest.approx(r["padded"]["total"] / r["varlen"]["total"])
    assert r["layouts"]["padded"]["num_rows"] == 2 and r["layouts"]["packed"]["num_rows"] == 1
    assert r["shape"]["hidden"] == 4096


def test_flops_lm_head_last_and_tile(capsys, seed_file):
    rc, out, _ = _run(capsys, "flops", "--lengths", seed_file, "--batch-size", 2, "--pack-len", 4096,
                      "--lm-head", "last", "--tile", "64,64", "--model", "llama-3.2-1b")
    assert rc == 0
    r = json.loads(out)
    s = MODELS["llama-3.2-1b"]
    assert r["useful"]["linear"] == 4050 * 2 * s.params(lm_head=False) + 2 * 2 * s.lm_head_params
    assert r["varlen"]["attention"] > r["useful"]["attention"]  # whole tiles on the diagonal
    assert r["tile"] == [64, 64] and r["model"] == "llama-3.2-1b"


def test_flops_model_from_config_json(capsys, seed_file, tmp_path):
    cfg = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 100, "tie_word_embeddings": True}
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(cfg))
    rc, out, err = _run(capsys, "flops", "--model", tmp_path / "ckpt", "--lengths", seed_file,
                        "--batch-size", 1, "--pack-len", 4096)
    assert rc == 0, err
    r = json.loads(out)
    assert r["shape"]["head_dim"] == 16 and r["shape"]["kv_heads"] == 2
    assert r["padded"]["attention"] == (50 * 51 // 2 + 4000 * 4001 // 2) * 4 * 4 * 16 * 2  # batch 1: no padding
    assert r["padded-masked"]["attention"] == (50 ** 2 + 4000 ** 2) * 4 * 4 * 16 * 2


@pytest.mark.parametrize("extra, message", [
    (["--model", "gpt-5"], "unknown model"),
    (["--tile", "64"], "--tile"),
    (["--tile", "64,0"], "--tile must be a pair of positive integers"),
    (["--strategy", "pad"], "--strategy (the packing side; the padded side is 'pad' with --batch-size) must be one of "
                            "'next-fit', 'ffd', 'bfd'; got 'pad'"),
    (["--strategy", "worst-fit"], "got 'worst-fit'"),
    (["--overlong", "drop"], "--overlong must be one of 'error', 'truncate', 'split'; got 'drop'"),
    (["--pack-len", "100"], "longer than the pack length"),
    (["--batch-size", "0"], "batch_size"),
])
def test_flops_bad_input_exits_2_with_one_line(capsys, seed_file, extra, message):
    argv = ["flops", "--lengths", seed_file, "--batch-size", 2, "--pack-len", 4096, *extra]
    rc, out, err = _run(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error:") and message in err


def test_flops_missing_file(capsys, tmp_path):
    rc, _, err = _run(capsys, "flops", "--lengths", tmp_path / "nope.txt", "--batch-size", 2, "--pack-len", 64)
    assert rc == 2 and "not found" in err
    rc, _, err = _run(capsys, "flops", "--lengths", tmp_path, "--batch-size", 2, "--pack-len", 64)
    assert rc == 2 and f"{tmp_path} is a directory, not a lengths file" in err


@pytest.mark.parametrize("content, why", [(b"\xff\xfe{}", "not UTF-8"),
                                          (b'{"hidden_size": "wide"}', "hidden_size is 'wide'"),
                                          (b"[1, 2]", "is a list, not an object")])
def test_flops_model_config_that_is_not_one_names_the_file(capsys, seed_file, tmp_path, content, why):
    cfg = tmp_path / "config.json"
    cfg.write_bytes(content)
    rc, out, err = _run(capsys, "flops", "--model", cfg, "--lengths", seed_file, "--batch-size", 2, "--pack-len", 4096)
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert f"{cfg}: " in err and why in err


def test_figures_writes_the_standard_pngs(capsys, tmp_path):
    out = tmp_path / "figs" / "new"  # created, parents too
    rc, stdout, err = _run(capsys, "figures", "--out", out, "--dpi", 60)
    assert rc == 0, err
    r = json.loads(stdout)
    names = sorted(f.name for f in out.iterdir())
    assert names == sorted(pathlib.Path(f).name for f in r["files"])
    for expected in ("batch_grid_seed.png", "batch_grid_azure.png", "mask_8_tokens.png", "mask_8192_tokens.png",
                     "position_ids_8_tokens.png", "waste_seed_llama-3-8b.png"):
        assert expected in names
    for f in out.iterdir():
        assert f.read_bytes()[:8] == PNG and f.stat().st_size > 5000


def test_figures_bad_dpi_is_one_line(capsys, tmp_path):
    rc, out, err = _run(capsys, "figures", "--out", tmp_path / "figs", "--dpi", 0)
    assert rc == 2 and out == "" and err == "error: --dpi must be an integer from 10 to 1,200, got 0\n"
    assert not (tmp_path / "figs").exists()


def test_figures_out_is_a_file(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    rc, _, err = _run(capsys, "figures", "--out", f)
    assert rc == 2 and "not a directory" in err


def test_figures_out_below_a_file_is_one_line_not_a_traceback(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    rc, out, err = _run(capsys, "figures", "--out", f / "figs")
    assert rc == 2 and out == "" and err.startswith("error:") and err.count("\n") == 1
    assert "Not a directory" in err and str(f / "figs") in err
