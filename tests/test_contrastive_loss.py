"""The contrastive loss (Nomic's InfoNCE through sentence-transformers) and the model it trains."""

import json
import logging

import pytest
import torch
from conftest import tiny_config
from docstrings import docstring_pairs
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss
from sentence_transformers.sentence_transformer.modules import (
    LayerNorm,
    Normalize,
    Pooling,
)

from nomic_bert_hf import NomicBertModel
from nomic_bert_hf.model.embedder import PROMPTS, build_embedder, save_embedder
from nomic_bert_hf.model.tokenization import save_tokenizer
from nomic_bert_hf.training.contrastive import contrastive_loss, load_embedder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dropout_free_dir(tmp_path_factory, tokenizer):
    """A tiny encoder without dropout (as v1.5), so that the plain and the cached loss see the same forward passes."""
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("encoder-no-dropout")
    NomicBertModel(tiny_config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).save_pretrained(path)
    save_tokenizer(tokenizer, path)
    return path


@pytest.fixture(scope="module")
def rows():
    return [row for row in docstring_pairs()["functions"] if len(row["negatives"]) == 8][:24]


def features(model, rows, negatives):
    columns = [[row["query"] for row in rows], [row["document"] for row in rows]]
    columns += [[row["negatives"][j] for row in rows] for j in range(negatives)]
    prompts = ["search_query: "] + ["search_document: "] * (len(columns) - 1)
    return [model.preprocess(texts, prompt=prompt) for texts, prompt in zip(columns, prompts)]


def loss_and_gradients(model, rows, negatives, **options):
    model.zero_grad()
    loss = contrastive_loss(model, gather_across_devices=False, **options)
    value = loss(features(model, rows, negatives), None)
    value.backward()
    return value.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("negatives, matryoshka_dims", [(0, ()), (2, ()), (2, (32, 16, 8))])
def test_gradcache_gives_the_same_loss_and_gradients(dropout_free_dir, rows, negatives, matryoshka_dims):
    """In float64, so that the comparison sees the algorithm, not float32 sums taken in another order (those differ
    by up to a few 1e-3 of a gradient's scale)."""
    model = build_embedder(dropout_free_dir, matryoshka=bool(matryoshka_dims)).double()
    torch.manual_seed(0)
    plain, plain_grads = loss_and_gradients(model, rows, negatives, cached=False, matryoshka_dims=matryoshka_dims)
    torch.manual_seed(0)
    cached, cached_grads = loss_and_gradients(
        model, rows, negatives, cached=True, mini_batch_size=5, matryoshka_dims=matryoshka_dims
    )
    torch.testing.assert_close(cached, plain, atol=1e-10, rtol=1e-10)
    assert plain_grads.keys() == cached_grads.keys() and len(plain_grads) > 10
    for name, grad in plain_grads.items():
        assert grad.abs().max() > 1e-4, name
        torch.testing.assert_close(cached_grads[name], grad, atol=1e-10, rtol=1e-8, msg=lambda m: f"{name}: {m}")


def test_gradcache_replays_its_mini_batches_under_the_steps_autocast(dropout_free_dir, rows):
    """sentence-transformers re-embeds with gradients in a backward hook, outside the Trainer's autocast; under `bf16`
    that half of the step must still run in bf16, with the gradients of the uncached loss."""
    model = build_embedder(dropout_free_dir)
    projections = []
    model[0].auto_model.encoder.layers[0].attn.Wqkv.register_forward_hook(
        lambda module, inputs, output: projections.append(output.dtype))
    gradients = {}
    for cached in (False, True):
        model.zero_grad()
        loss = contrastive_loss(model, cached=cached, mini_batch_size=5, gather_across_devices=False)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = loss(features(model, rows, 2), None)
        value.backward()  # outside autocast, as the Trainer calls it
        gradients[cached] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert projections and set(projections) == {torch.bfloat16}  # the backward hook's replay included
    assert torch.nn.functional.cosine_similarity(gradients[True], gradients[False], dim=0) > 0.99


def test_loss_is_infonce_at_temperature_002_from_query_to_documents(dropout_free_dir, rows):
    model = build_embedder(dropout_free_dir)
    loss = contrastive_loss(model, cached=True, mini_batch_size=7, gather_across_devices=False)
    assert loss.scale == 50.0 and loss.directions == ("query_to_doc",)
    with torch.no_grad():
        value = loss(features(model, rows, 2), None)
        queries, documents, *negatives = (model(f)["sentence_embedding"] for f in features(model, rows, 2))
    candidates = torch.cat([documents, *negatives])  # every query's positive, then the hard negatives of all queries
    logits = 50.0 * torch.nn.functional.normalize(queries, dim=-1) @ torch.nn.functional.normalize(candidates, dim=-1).T
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(len(rows)))
    torch.testing.assert_close(value, expected, atol=1e-5, rtol=1e-5)


def test_matryoshka_dimensions_wider_than_the_model_are_left_out(dropout_free_dir, caplog):
    model = build_embedder(dropout_free_dir, matryoshka=True)
    with caplog.at_level(logging.WARNING, logger="nomic_bert_hf.training.contrastive"):
        loss = contrastive_loss(model, matryoshka_dims=(768, 512, 32, 16))
    assert isinstance(loss, MatryoshkaLoss) and loss.matryoshka_dims == (32, 16) and loss.matryoshka_weights == (1, 1)
    assert "[512, 768] exceed the model's width 32" in caplog.text
    with pytest.raises(ValueError, match="no Matryoshka dimension in \\[768, 64\\] fits the model's width 32"):
        contrastive_loss(model, matryoshka_dims=(768, 64))


def test_an_mlm_checkpoint_becomes_an_embedder_with_prompts(mlm_dir):
    model = load_embedder(mlm_dir)
    assert [type(module) for module in model][1:] == [Pooling, Normalize]
    assert model.prompts == PROMPTS


def test_an_embedder_gets_a_frozen_matryoshka_norm_and_nomic_prompts(encoder_dir, tmp_path, caplog):
    folder = save_embedder(build_embedder(encoder_dir), tmp_path / "embedder")
    settings = folder / "config_sentence_transformers.json"
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "prompts": {"query": "query: "}}))
    with caplog.at_level(logging.WARNING, logger="nomic_bert_hf.training.contrastive"):
        model = load_embedder(folder, matryoshka=True)
    assert "setting the prompts to Nomic's task prefixes" in caplog.text
    assert model.prompts == PROMPTS
    assert [type(module) for module in model][1:] == [Pooling, LayerNorm, Normalize]
    norm = model[2]
    assert not any(p.requires_grad for p in norm.parameters())
    assert (norm.norm.weight == 1).all() and (norm.norm.bias == 0).all()
    assert load_embedder(folder).prompts == PROMPTS and len(load_embedder(folder)) == 3
