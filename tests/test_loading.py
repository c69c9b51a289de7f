"""Loading paths: bundled remote code in a fresh offline process, transformers' native class, Nomic's published
layout, and the conversion command between them."""

import json
import subprocess
import sys

import pytest
import torch
import transformers
from conftest import random_ids, sharpen, tiny_config

from nomic_bert_hf import (
    NomicBertForPreTraining,
    NomicBertForSequenceClassification,
    NomicBertModel,
)
from nomic_bert_hf.model.convert import NOMIC_AUTO_MAP, load_checkpoint, main, to_nomic
from nomic_bert_hf.model.tokenization import bert_uncased_tokenizer
from nomic_bert_hf.utils.files import load_strict

FRESH_PROCESS = """
import sys, torch
sys.modules["nomic_bert_hf"] = None  # the package must not be importable: only the folder's own code may run
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
ids = torch.load(sys.argv[2], weights_only=True)
with torch.no_grad():
    torch.save(model(ids).last_hidden_state, sys.argv[3])
print(type(model).__module__)
"""


def hidden(model, ids, mask=None):
    with torch.no_grad():
        return model(ids, attention_mask=mask).last_hidden_state


def test_remote_code_loads_in_a_fresh_offline_process(encoder_dir, tmp_path):
    config = json.loads((encoder_dir / "config.json").read_text())
    assert set(config["auto_map"]) == {
        "AutoConfig", "AutoModel", "AutoModelForMaskedLM", "AutoModelForSequenceClassification",
        "AutoModelForTokenClassification",
    }
    assert all("--" not in reference for reference in config["auto_map"].values())  # no other repository's code
    ids = random_ids(2, 10)
    torch.save(ids, tmp_path / "ids.pt")
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(encoder_dir), str(tmp_path / "ids.pt"), str(tmp_path / "out.pt")],
        capture_output=True, text=True, check=True,
    )
    assert result.stdout.strip().startswith("transformers_modules.")
    expected = hidden(NomicBertModel.from_pretrained(encoder_dir).eval(), ids)
    torch.testing.assert_close(torch.load(tmp_path / "out.pt", weights_only=True), expected, atol=0, rtol=0)


def test_auto_classes_pick_bundled_code_only_when_trusted(encoder_dir, mlm_dir):
    assert type(transformers.AutoModel.from_pretrained(encoder_dir)) is transformers.NomicBertModel
    trusted = transformers.AutoModel.from_pretrained(encoder_dir, trust_remote_code=True)
    assert type(trusted).__name__ == "NomicBertModel" and type(trusted).__module__.startswith("transformers_modules")
    mlm = transformers.AutoModelForMaskedLM.from_pretrained(mlm_dir, trust_remote_code=True)
    assert type(mlm).__name__ == "NomicBertForPreTraining"
    classifier = transformers.AutoModelForSequenceClassification.from_pretrained(
        encoder_dir, trust_remote_code=True, num_labels=3
    )
    assert type(classifier).__name__ == "NomicBertForSequenceClassification"


@pytest.mark.parametrize("length", [8, 512, 2048, 2049, 4096, 8192])
def test_single_sequences_match_native_transformers(encoder_dir, length):
    ours = NomicBertModel.from_pretrained(encoder_dir).eval()
    native = transformers.NomicBertModel.from_pretrained(encoder_dir).eval()  # fresh: native keeps RoPE state
    ids = random_ids(1, length, seed=length)
    torch.testing.assert_close(hidden(ours, ids), hidden(native, ids), atol=1e-5, rtol=0)


@pytest.mark.parametrize("lengths", [(7, 3, 5), (2048, 900, 1), (300, 2048)])
def test_padded_batches_match_native_transformers(encoder_dir, lengths):
    ours = NomicBertModel.from_pretrained(encoder_dir).eval()
    native = transformers.NomicBertModel.from_pretrained(encoder_dir).eval()
    ids = random_ids(len(lengths), max(lengths))
    mask = (torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]).long()
    real = mask.bool()
    torch.testing.assert_close(hidden(ours, ids, mask)[real], hidden(native, ids, mask)[real], atol=1e-5, rtol=0)


def test_parity_checks_would_catch_a_rope_mismatch(encoder_dir):
    ours = NomicBertModel.from_pretrained(encoder_dir).eval()
    native = transformers.NomicBertModel.from_pretrained(encoder_dir, rope_parameters={"rope_type": "default", "rope_theta": 1000.0}).eval()
    ids = random_ids(1, 4096)
    assert (hidden(ours, ids) - hidden(native, ids)).abs().max() > 1e-3


@pytest.fixture(scope="module")
def nomic_layout(tmp_path_factory):
    """A checkpoint in the layout Nomic published, one per head, from a random init."""
    folders = {}
    for model_class in (NomicBertModel, NomicBertForPreTraining, NomicBertForSequenceClassification):
        torch.manual_seed(0)
        model = sharpen(model_class(tiny_config(num_labels=2)))
        folder = tmp_path_factory.mktemp(model_class.__name__)
        to_nomic(model, bert_uncased_tokenizer(), folder / "nomic", overwrite=True)
        folders[model_class] = (model.eval(), folder / "nomic")
    return folders


def test_nomic_layout_is_what_nomic_published(nomic_layout):
    from safetensors import safe_open

    _, folder = nomic_layout[NomicBertForPreTraining]
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == NOMIC_AUTO_MAP and config["n_embd"] == 32
    assert not {"hidden_size", "rope_parameters", "intermediate_size"} & set(config)
    with safe_open(folder / "model.safetensors", "pt") as weights:
        keys = set(weights.keys())
    assert {"bert.emb_ln.weight", "bert.encoder.layers.0.attn.Wqkv.weight", "bert.encoder.layers.1.mlp.fc11.weight",
            "cls.predictions.decoder.weight", "cls.predictions.transform.dense.weight"} <= keys
    assert not any(key.endswith("bias") and "norm" not in key and "emb_ln" not in key for key in keys)


@pytest.mark.parametrize("model_class", [NomicBertModel, NomicBertForPreTraining, NomicBertForSequenceClassification])
def test_nomic_layout_loads_strictly(nomic_layout, model_class):
    original, folder = nomic_layout[model_class]
    loaded = load_checkpoint(folder)
    assert type(loaded) is model_class
    for key, value in original.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, atol=0, rtol=0)
    direct = load_strict(model_class, folder)  # from_pretrained reads the layout as it is, nothing left at random
    ids = random_ids(2, 9)
    torch.testing.assert_close(direct(ids).logits if model_class is not NomicBertModel else hidden(direct, ids),
                               original(ids).logits if model_class is not NomicBertModel else hidden(original, ids))


def test_wrong_weight_names_are_listed_not_initialised(tmp_path, nomic_layout):
    from safetensors.torch import load_file, save_file

    _, folder = nomic_layout[NomicBertModel]
    state_dict = load_file(folder / "model.safetensors")
    state_dict["encoder.layers.0.attn.qkv.weight"] = state_dict.pop("encoder.layers.0.attn.Wqkv.weight")
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    save_file(state_dict, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing \['encoder.layers.0.attn.Wqkv.weight'\].*attn.qkv.weight"):
        load_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="encoder.layers.0.attn.Wqkv.weight"):
        load_strict(NomicBertModel, tmp_path)


def test_wrong_weight_shapes_fail(tmp_path, nomic_layout):
    from safetensors.torch import load_file, save_file

    _, folder = nomic_layout[NomicBertModel]
    state_dict = load_file(folder / "model.safetensors")
    state_dict["encoder.layers.0.mlp.fc2.weight"] = torch.zeros(32, 63)
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    save_file(state_dict, tmp_path / "model.safetensors")
    with pytest.raises(RuntimeError, match="size mismatch.*fc2"):
        load_checkpoint(tmp_path)


def test_convert_nomic_to_package_and_back(nomic_layout, tmp_path):
    original, folder = nomic_layout[NomicBertForPreTraining]
    main([str(folder), str(tmp_path / "package"), "--n_positions", "4096"])
    package = tmp_path / "package"
    assert {"modeling_nomic_bert.py", "configuration_nomic_bert.py", "vocab.txt"} <= {p.name for p in package.iterdir()}
    assert json.loads((package / "tokenizer_config.json").read_text())["model_max_length"] == 4096
    main([str(package), str(tmp_path / "back"), "--to", "nomic"])
    again = load_checkpoint(tmp_path / "back")
    assert again.config.n_positions == 4096
    for key, value in original.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value, atol=0, rtol=0)
    with pytest.raises(FileExistsError):
        main([str(package), str(tmp_path / "back"), "--to", "nomic"])


def test_convert_accepts_the_dashed_spelling_of_its_flags(capsys):
    with pytest.raises(SystemExit):  # the flags parse; then the missing --sentence_transformers is the one error
        main(["source", "output", "--n-positions", "4096", "--rotary-scaling-factor", "2", "--matryoshka"])
    assert "--matryoshka needs --sentence_transformers" in capsys.readouterr().err


def test_native_layout_for_the_mlm_head(mlm_dir, tmp_path):
    main([str(mlm_dir), str(tmp_path / "native"), "--to", "native"])
    native, info = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "native", output_loading_info=True)
    assert type(native) is transformers.NomicBertForMaskedLM and not info["missing_keys"]
    ours = NomicBertForPreTraining.from_pretrained(mlm_dir).eval()
    ids = random_ids(2, 30)
    with torch.no_grad():
        torch.testing.assert_close(native.eval()(ids).logits, ours(ids).logits, atol=1e-5, rtol=0)
