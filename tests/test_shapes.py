"""The shapes registry: names, presets, configs and config.json files, each bad value named."""

import json
import re
import types

import pytest

from packviz.shapes import MODELS, NAMES, PRESETS, get_shape, shape_from_config, shape_from_config_file


def test_every_name_resolves_and_presets_are_small():
    assert set(NAMES) == set(MODELS) | set(PRESETS)
    for name in NAMES:
        assert get_shape(name.upper()).name == name
    assert all(p.total_params() < 5_000_000 for p in PRESETS.values())
    assert get_shape("tiny-3.2").tied_embeddings and get_shape("tiny-3.2").rope_parameters["rope_type"] == "llama3"


def test_kv_bytes_per_token_counts_k_and_v_of_every_layer():
    s = MODELS["llama-3-8b"]
    assert s.kv_bytes_per_token() == 2 * 32 * 8 * 128 * 2 == 131_072
    assert s.kv_bytes_per_token(bytes_per_param=4) == 2 * s.kv_bytes_per_token()


def test_config_file_round_trip(tmp_path):
    f = tmp_path / "config.json"
    kw = MODELS["llama-3.2-1b"].config_kwargs()
    data = {"model_type": "llama", "hidden_size": kw["hidden_size"], "intermediate_size": kw["intermediate_size"],
            "num_hidden_layers": kw["num_hidden_layers"], "num_attention_heads": kw["num_attention_heads"],
            "num_key_value_heads": kw["num_key_value_heads"], "head_dim": kw["head_dim"],
            "vocab_size": kw["vocab_size"], "tie_word_embeddings": True, "max_position_embeddings": 131072}
    f.write_text(json.dumps(data))
    for where in (f, tmp_path):  # the file, or the checkpoint directory holding it
        s = shape_from_config_file(where)
        assert s == MODELS["llama-3.2-1b"].__class__(**{**MODELS["llama-3.2-1b"].as_dict(), "name": str(where)})


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "is a list, not an object"),
    ("{not json", "not valid JSON (line 1"),
    ('{"model_type": "mistral"}', "model_type is 'mistral'"),
    ('{"hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 0, '
     '"vocab_size": 10}', "num_attention_heads is 0"),
    ('{"hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1, "vocab_size": 10}',
     "num_attention_heads is missing"),
    ('{"hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 3, '
     '"vocab_size": 10}', "not divisible"),
    ('{"hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 4, '
     '"num_key_value_heads": 3, "vocab_size": 10}', "not a multiple"),
    ('{"hidden_size": "64", "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 4, '
     '"vocab_size": 10}', "hidden_size is '64'"),
])
def test_bad_config_files_are_refused_naming_the_file_and_key(tmp_path, content, message):
    f = tmp_path / "config.json"
    f.write_text(content)
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        shape_from_config_file(f)
    assert str(f) in str(e.value) and "\n" not in str(e.value)


def test_missing_config_file_and_bad_names(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        shape_from_config_file(tmp_path)
    with pytest.raises(ValueError, match="unknown model 'llama-2-7b'; choose one of llama-3-8b"):
        get_shape("llama-2-7b")
    with pytest.raises(ValueError, match="expected a model name"):
        get_shape(3)


def test_duck_typed_config_is_validated():
    cfg = types.SimpleNamespace(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=4, vocab_size=100, rms_norm_eps=-1)
    with pytest.raises(ValueError, match="rms_norm_eps is -1"):
        shape_from_config(cfg)
