"""Publishing: the Hub repository folder, its model card with the scores mteb wrote, and the upload."""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml
from evaluation_data import write_retrieval_task, write_sts_task
from huggingface_hub import HfApi, ModelCard
from mteb.results import TaskResult

from nomic_bert_hf.evaluation import (
    PROTOCOL_PROMPTS,
    embedder_model_meta,
    evaluate_embedder,
    resolve_tasks,
)
from nomic_bert_hf.hub.publish import (
    TEMPLATE,
    build_repo_folder,
    main,
    validate_repo_folder,
)
from nomic_bert_hf.model.embedder import PROMPTS, build_embedder, save_embedder
from nomic_bert_hf.model.embedder_folder import weights_digest

REPO_ID = "test-org/nomic-embed-text"
FOREIGN_SCORE = 0.987654


@pytest.fixture(scope="module")
def model_dir(encoder_dir, tmp_path_factory):
    """A trained-looking embedder folder: weights, its training config and a data manifest."""
    folder = save_embedder(build_embedder(encoder_dir, matryoshka=True), tmp_path_factory.mktemp("run") / "final")
    (folder / "config.yaml").write_text(yaml.safe_dump(
        {"model_name_or_path": str(encoder_dir), "learning_rate": 2e-5, "matryoshka_dims": [32, 16, 8], "seed": 42}))
    (folder / "data_manifest.json").write_text(json.dumps({
        "name": "default corpus", "shards": [
            {"source": "wordnet-base", "version": "1:3.0-37", "license": "WordNet", "rows": 1200, "sha256": "ab12"},
            {"source": "manpages", "version": "6.03-2", "license": "GPL-2+", "rows": 300, "sha256": "cd34"}]}))
    return folder


@pytest.fixture(scope="module")
def results_dir(model_dir, tmp_path_factory):
    """mteb results of these weights, plus a run of other weights that must stay out of the card."""
    root = tmp_path_factory.mktemp("eval")
    tasks = resolve_tasks([str(write_retrieval_task(root / "command-retrieval")), str(write_sts_task(root / "sts"))])
    results = root / "results"
    evaluate_embedder(embedder_model_meta(model_dir, name=REPO_ID), tasks, results_dir=results, show_progress_bar=False)
    own = next((results / "results").glob("*/*"))
    foreign = own.parent / "sha256-0000000000000000"
    shutil.copytree(own, foreign)
    meta = json.loads((foreign / "model_meta.json").read_text())
    (foreign / "model_meta.json").write_text(json.dumps({**meta, "revision": foreign.name}))
    sts = json.loads((foreign / "sts.json").read_text())
    sts["scores"]["test"][0]["main_score"] = FOREIGN_SCORE
    (foreign / "sts.json").write_text(json.dumps(sts))
    return results


@pytest.fixture(scope="module")
def published(model_dir, results_dir, tmp_path_factory):
    folder = build_repo_folder(model_dir, tmp_path_factory.mktemp("publish") / "nomic-embed-text", repo_id=REPO_ID,
                               results_dirs=[results_dir])
    return folder, validate_repo_folder(folder)


def test_folder_holds_the_exact_weights_code_tokenizer_and_prompts(published, model_dir):
    folder, _ = published
    names = {path.name for path in folder.iterdir()}
    assert {"model.safetensors", "config.json", "modeling_nomic_bert.py", "configuration_nomic_bert.py", "vocab.txt",
            "tokenizer.json", "modules.json", "config_sentence_transformers.json", "sentence_bert_config.json",
            "1_Pooling", "2_LayerNorm", "README.md", "config.yaml", "data_manifest.json", "mteb_results"} <= names
    assert weights_digest(folder) == weights_digest(model_dir)
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert all("--" not in reference for reference in auto_map.values())
    prompts = json.loads((folder / "config_sentence_transformers.json").read_text())["prompts"]
    assert prompts == {**PROTOCOL_PROMPTS, **PROMPTS}


def test_folder_loads_back_by_name_in_a_fresh_offline_process(published):
    _, report = published  # SentenceTransformer("nomic-embed-text") from the folder above, without our package
    assert report["trusted_class"].startswith("transformers_modules.")
    assert report["native_class"] == "transformers.models.nomic_bert.modeling_nomic_bert"
    assert report["automodel_class"].startswith("transformers_modules.") and report["automodel_finite"]
    assert report["native_difference"] <= 1e-4 and report["dimension"] == 32
    assert report["prompts"]["STS"] == "classification: " and report["max_seq_length"] == 8192


def test_card_holds_the_scores_mteb_wrote_and_only_those(published, results_dir, model_dir):
    folder, _ = published
    card = ModelCard.load(folder / "README.md")
    run = results_dir / "results" / "test-org__nomic-embed-text" / weights_digest(model_dir)
    written = {name: TaskResult.from_disk(run / f"{name}.json").get_score() for name in ("command-retrieval", "sts")}
    in_index = {result.dataset_name: result.metric_value for result in card.data.eval_results}
    assert in_index == pytest.approx(written)
    assert {result.dataset_type for result in card.data.eval_results} == {"local/command-retrieval", "local/sts"}
    for score in written.values():
        assert f"{100 * score:.2f}" in card.text
    assert str(FOREIGN_SCORE) not in card.content and f"{100 * FOREIGN_SCORE:.2f}" not in card.content
    assert not (folder / "mteb_results" / "test-org__nomic-embed-text" / "sha256-0000000000000000").exists()
    assert card.data.license == "apache-2.0" and card.data.library_name == "sentence-transformers"


def test_card_documents_usage_training_data_and_citations(published):
    text = (published[0] / "README.md").read_text()
    assert text.index("## Usage") < text.index("## Training") < text.index("## Evaluation")
    for snippet in ('SentenceTransformer("test-org/nomic-embed-text", trust_remote_code=True)',
                    'AutoModel.from_pretrained("test-org/nomic-embed-text", trust_remote_code=True)',
                    "mteb.evaluate(", "truncate_dim=8", "rotary_scaling_factor", "`search_query: `",
                    "learning_rate: 2.0e-05", "| wordnet-base | 1:3.0-37 | WordNet | 1200 | ab12 |",
                    "eprint = {2402.01613}", "@misc{test_org_nomic_embed_text"):
        assert snippet in text, snippet
    assert "### ONNX" not in text and not (published[0] / "onnx").exists()  # only with --onnx / --onnx_int8


def test_the_template_at_the_repo_root_is_the_one_the_package_renders():
    """`model_card.md` is kept at the repository root for readers; the installed package carries its copy."""
    root_template = Path(__file__).resolve().parents[1] / "model_card.md"
    assert root_template.read_text() == TEMPLATE.read_text(), "model_card.md and the package's copy differ: sync them"


def test_folder_without_sentence_transformers_files_is_refused(encoder_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="modules.json.*config_sentence_transformers.json"):
        build_repo_folder(encoder_dir, tmp_path / "out", repo_id=REPO_ID)
    assert not (tmp_path / "out").exists()


def test_code_from_another_repository_is_refused(model_dir, tmp_path):
    copy = Path(shutil.copytree(model_dir, tmp_path / "model"))
    config = json.loads((copy / "config.json").read_text())
    config["auto_map"]["AutoModel"] = "nomic-ai/nomic-bert-2048--modeling_hf_nomic_bert.NomicBertModel"
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not a file in the folder"):
        build_repo_folder(copy, tmp_path / "out", repo_id=REPO_ID)


def test_push_without_token_fails_before_writing(model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(PermissionError, match="hf auth login"):  # the dashed spelling of the flags still works
        main([str(model_dir), "--repo-id", REPO_ID, "--output-dir", str(tmp_path / "out")])
    assert list(tmp_path.iterdir()) == []


def test_push_without_network_fails_before_writing(model_dir, tmp_path):
    with pytest.raises(ConnectionError, match="Nothing was written"):  # the tests run with HF_HUB_OFFLINE=1
        main([str(model_dir), "--repo_id", REPO_ID, "--output_dir", str(tmp_path / "out"), "--token", "hf_test"])
    assert list(tmp_path.iterdir()) == []


def test_push_creates_the_repository_then_uploads_the_complete_folder(model_dir, results_dir, tmp_path):
    uploaded = {}

    def upload_folder(api, **kwargs):
        uploaded["files"] = sorted(path.name for path in Path(kwargs["folder_path"]).iterdir())
        return f"https://huggingface.co/{kwargs['repo_id']}/commit/1"

    with mock.patch.object(HfApi, "create_repo", autospec=True) as create_repo, \
            mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload_folder) as upload:
        folder = main([str(model_dir), "--repo_id", REPO_ID, "--output_dir", str(tmp_path / "nomic-embed-text"),
                       "--results", str(results_dir), "--token", "hf_test", "--private"])
    (api, repo_id), options = create_repo.call_args
    assert api.token == "hf_test" and repo_id == REPO_ID
    assert options == {"repo_type": "model", "private": True, "exist_ok": True}
    (api, ), options = upload.call_args
    assert api.token == "hf_test"
    assert options["repo_id"] == REPO_ID and options["folder_path"] == str(folder) and options["repo_type"] == "model"
    assert {"README.md", "model.safetensors", "modules.json"} <= set(uploaded["files"])


SECRET = "hf_NeverWriteThisTokenAnywhere0123456789"


def files_holding(folder: Path, text: str) -> list[Path]:
    return [path for path in sorted(folder.rglob("*")) if path.is_file() and text.encode() in path.read_bytes()]


@pytest.mark.slow
def test_a_token_reaches_no_output_of_a_dry_run(model_dir, results_dir, tmp_path):
    provenance = tmp_path / "provenance.json"
    provenance.write_text(json.dumps({"command": "pipeline.py", "environment": "a record from the pipeline"}))
    output = tmp_path / "nomic-embed-text"
    process = subprocess.run(
        [str(Path(sys.executable).parent / "nomic-bert-publish"), str(model_dir), "--repo_id", REPO_ID,
         "--output_dir", str(output), "--results", str(results_dir), "--provenance", str(provenance),
         "--token", SECRET, "--dry_run"],
        env={**os.environ, "HF_TOKEN": SECRET}, capture_output=True, text=True, check=False, timeout=600,
    )
    assert process.returncode == 0, process.stderr
    assert (output / "README.md").is_file()
    assert SECRET not in process.stdout + process.stderr
    assert files_holding(tmp_path, SECRET) == []


def test_a_token_from_the_environment_reaches_no_output_of_an_upload(model_dir, tmp_path, monkeypatch, caplog,
                                                                    capsys):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    tokens = []

    def upload_folder(api, **kwargs):
        tokens.append(api.token)
        return f"https://huggingface.co/{kwargs['repo_id']}/commit/1"

    with caplog.at_level(logging.DEBUG), mock.patch.object(HfApi, "create_repo", autospec=True), \
            mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload_folder):
        folder = main([str(model_dir), "--repo_id", REPO_ID, "--output_dir", str(tmp_path / "nomic-embed-text")])
    assert tokens == [SECRET]  # the upload did use it
    printed = capsys.readouterr()
    assert SECRET not in caplog.text + printed.out + printed.err
    assert files_holding(folder, SECRET) == []


def test_card_follows_the_stages_back_and_reports_glue(model_dir, tmp_path):
    mlm = tmp_path / "mlm" / "final"
    mlm.mkdir(parents=True)
    (mlm / "config.yaml").write_text(yaml.safe_dump({"model_name_or_path": "nomic-ai/nomic-bert-2048",
                                                     "mlm_probability": 0.3}))
    model = Path(shutil.copytree(model_dir, tmp_path / "contrastive" / "final"))
    (model / "config.yaml").write_text(yaml.safe_dump({"model_name_or_path": str(mlm), "learning_rate": 2e-5}))
    glue = tmp_path / "glue.json"
    glue.write_text(json.dumps({"cola": {"matthews_correlation": 0.5}, "stsb": {"pearson": 0.9, "spearmanr": 0.89}}))
    folder = build_repo_folder(model, tmp_path / "nomic-embed-text", repo_id=REPO_ID, glue_results=glue)
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == "nomic-ai/nomic-bert-2048"
    assert "mlm_probability: 0.3" in card.text and "learning_rate: 2.0e-05" in card.text
    assert card.text.index("<summary>contrastive</summary>") < card.text.index("<summary>mlm</summary>")
    assert "| stsb | pearson | 0.900 |" in card.text and "| cola | matthews_correlation | 0.500 |" in card.text
    assert "No MTEB results were recorded for these weights." in card.text
    assert yaml.safe_load((folder / "training_configs" / "1_mlm.yaml").read_text())["mlm_probability"] == 0.3


@pytest.mark.slow
def test_onnx_graphs_travel_with_the_folder_and_the_card_says_how_to_run_them(model_dir, tmp_path):
    """`--onnx_int8`: both graphs in onnx/, checked in the fresh process, and the card's onnxruntime-only snippet,
    run against the folder as a Hub download, gives the sentence-transformers embedding."""
    from hub_copies import cache_as_hub_model
    from sentence_transformers import SentenceTransformer

    folder = main([str(model_dir), "--repo_id", REPO_ID, "--output_dir", str(tmp_path / "nomic-embed-text"),
                   "--dry_run", "--onnx_int8"])
    assert sorted(path.name for path in (folder / "onnx").iterdir()) == ["model.onnx", "model_qint8.onnx"]
    report = validate_repo_folder(folder)
    assert set(report["onnx"]) == {"model.onnx", "model_qint8.onnx"} and report["onnx"]["model.onnx"][0] <= 1e-4
    text = (folder / "README.md").read_text()
    assert 'load_onnx_embedder("test-org/nomic-embed-text", "onnx/model_qint8.onnx")' in text
    snippet = text.split("With onnxruntime and a tokenizer only:")[1].split("```python")[1].split("```")[0]
    cache_as_hub_model(folder, REPO_ID)
    namespace = {}
    exec(snippet, namespace)
    expected = SentenceTransformer(str(folder), trust_remote_code=True).encode_query(["What is TSNE?"])
    assert float((namespace["embedding"] * expected).sum()) >= 0.99  # int8: close to, not equal to, fp32
