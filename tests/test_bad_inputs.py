"""Bad inputs as users give them: each refused with one line that names the file and the problem, the library's own
error kept as the cause. In-process here; `test_the_scripts_print_it_as_one_line` checks the scripts print it so."""

import gzip
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_cli import command, last_line
from transformers import BertConfig, BertModel

from nomic_bert_hf.data.hub_data import inspect_split
from nomic_bert_hf.data.mlm_data import load_documents
from nomic_bert_hf.data.pair_data import PairSource, load_pairs
from nomic_bert_hf.model.embedder import build_embedder
from nomic_bert_hf.modeling_nomic_bert import NomicBertForPreTraining
from nomic_bert_hf.training.contrastive import load_embedder
from nomic_bert_hf.utils.configs import parse_config
from nomic_bert_hf.utils.files import load_strict

ROWS = [{"query": f"what is item {n}", "document": f"item {n} is a thing"} for n in range(50)]


def jsonl(rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("bert") / "bert-tiny"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                         vocab_size=100)).save_pretrained(path)
    return path


def test_a_cut_short_gzip_corpus_shard_is_named(tmp_path):
    shard = tmp_path / "shard-00000.jsonl.gz"
    shard.write_bytes(gzip.compress(jsonl({"text": "some words " * 50} for _ in range(200)).encode())[:300])
    with pytest.raises(ValueError) as error:
        load_documents([str(shard)])
    assert str(error.value).startswith(f"{shard}: the gzip stream is cut short or corrupt")
    assert error.value.__cause__ is not None  # the library's error, kept


def test_a_malformed_json_line_is_named_with_its_line(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    lines = jsonl(ROWS).splitlines(keepends=True)
    lines[6] = '{"query": "broken", "document": \n'
    pairs.write_text("".join(lines))
    with pytest.raises(ValueError) as error:
        load_pairs(PairSource(name="pairs", path=str(pairs)))
    assert str(error.value).startswith(f"{pairs}: line 7: malformed JSON")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "fine"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"corpus.jsonl: line 2: a JSON list, not an object of named fields"):
        load_documents([str(corpus)])


def test_a_cut_short_parquet_file_is_named(tmp_path):
    folder = tmp_path / "dataset" / "data"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ROWS * 20), folder / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(ROWS * 20), folder / "train-00001-of-00002.parquet")
    cut = folder / "train-00001-of-00002.parquet"
    cut.write_bytes(cut.read_bytes()[:-100])
    with pytest.raises(ValueError) as error:
        inspect_split(str(tmp_path / "dataset"))
    assert str(error.value).startswith(f"{cut}: not a readable parquet file, perhaps cut short")
    with pytest.raises(ValueError, match="train-00001-of-00002.parquet: not a readable parquet file"):
        load_pairs(PairSource(name="pairs", path=str(tmp_path / "dataset")))


def test_a_folder_that_is_not_nomic_bert_is_refused_by_what_it_holds(bert_dir, tmp_path):
    with pytest.raises(ValueError, match=r"^.*bert-tiny holds a 'bert' model, not 'nomic_bert'$"):
        load_strict(NomicBertForPreTraining, bert_dir)
    with pytest.raises(ValueError, match="bert-tiny holds a 'bert' model"):
        load_embedder(bert_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty has no config.json: not a model folder"):
        load_embedder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist"):
        load_embedder(tmp_path / "nowhere")


def test_a_cut_short_model_safetensors_is_named(encoder_dir, tmp_path):
    folder = tmp_path / "encoder"
    folder.mkdir()
    for file in encoder_dir.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError) as error:
        build_embedder(folder)
    assert str(error.value).startswith(f"{weights}: not a readable safetensors file, perhaps cut short")


@pytest.mark.parametrize(("yaml_text", "problem"), [
    ("learning_rate: -1e-4\n", "learning_rate: must be positive, got -0.0001"),
    ("learning_rate: [1, 2]\n", "learning_rate: expected a number, got [1, 2]"),
    ("max_steps: 2.5\n", "max_steps: expected an integer, got 2.5"),
    ("bf16: maybe\n", "bf16: expected true or false, got 'maybe'"),
    ("lr_scheduler_type: cosin\n", "lr_scheduler_type: 'cosin' is not one of ["),
    ("max_steps: [\n", "not valid YAML (line 2, column 1: expected the node content"),
    ("- max_steps\n", "holds a YAML list, not a mapping of settings"),
])
def test_a_bad_yaml_config_is_named_with_the_setting(yaml_text, problem, tmp_path):
    from transformers import TrainingArguments

    config = tmp_path / "config.yaml"
    config.write_text(yaml_text)
    with pytest.raises(ValueError) as error:
        parse_config([TrainingArguments], [str(config), "--output_dir", str(tmp_path)])
    assert str(error.value).startswith(f"{config}: {problem}")


def test_a_negative_flag_is_named_as_the_flag(tmp_path):
    from transformers import TrainingArguments

    with pytest.raises(ValueError, match=r"^--learning_rate: must be positive, got -3.0$"):
        parse_config([TrainingArguments], ["--output_dir", str(tmp_path), "--learning_rate=-3"])


@pytest.mark.slow
def test_the_scripts_print_it_as_one_line(bert_dir, encoder_dir, tmp_path):
    mlm = command(sys.executable, "training/mlm.py", "training/configs/mlm/tiny.yaml", "--model_name_or_path",
                  bert_dir, "--output_dir", tmp_path / "mlm")
    assert mlm.returncode == 1 and "Traceback" not in mlm.stderr
    assert last_line(mlm) == f"mlm.py: error: {bert_dir} holds a 'bert' model, not 'nomic_bert'"
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(jsonl(ROWS) + '{"query": "cut\n')
    contrastive = command(sys.executable, "training/contrastive.py", "training/configs/contrastive/tiny-pretrain.yaml",
                          "--model_name_or_path", encoder_dir, "--train_datasets", json.dumps({"pairs": str(pairs)}),
                          "--output_dir", tmp_path / "c")
    assert contrastive.returncode == 1 and "Traceback" not in contrastive.stderr
    assert last_line(contrastive).startswith(f"contrastive.py: error: {pairs}: line 51: malformed JSON")
