"""MLM training throughput: this package's NomicBertForPreTraining against transformers' native NomicBertForMaskedLM.

    python benchmarks/mlm_throughput.py
    python benchmarks/mlm_throughput.py --configs tiny cpu-small nomic-bert-2048 --repeats 5 --threads 1

Both models get the same weights (the native one is written by `nomic_bert_hf.model.convert.to_native`, with
zeros for the native head's extra biases, and read back with `from_pretrained`), the same optimizer
(AdamW) and the same batches (30% masking). A step is forward, backward and optimizer step; tokens/s counts every
input token. Ours decodes only the masked positions (`dense_seq_output`); the native head decodes every token.
The models alternate, `--repeats` times, and the table shows medians: the CPU may be shared, so single numbers are
noisy. The 137M nomic-bert-2048 architecture runs a few steps at a short sequence length (see CASES).
"""

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers
import yaml

from nomic_bert_hf import NomicBertConfig, NomicBertForPreTraining
from nomic_bert_hf.data.mlm_data import MaskingCollator
from nomic_bert_hf.model.convert import to_native
from nomic_bert_hf.model.tokenization import bert_uncased_tokenizer

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs" / "mlm"
ARCHITECTURE = ("n_embd", "n_layer", "n_head", "n_inner", "resid_pdrop", "embd_pdrop", "attn_pdrop")
# name -> (config file, batch size, sequence length, timed steps per repeat)
CASES = {
    "tiny": ("tiny.yaml", 8, 64, 20),  # the config's own batch
    "cpu-small": ("cpu-small.yaml", 32, 128, 3),  # the config's own batch
    "nomic-bert-2048": ("nomic-bert-2048.yaml", 4, 256, 2),  # 137M; the recipe's 2048 x 64 is a GPU batch
}


def build_models(config_file: str, workdir: Path):
    values = yaml.safe_load((CONFIGS / config_file).read_text())
    torch.manual_seed(0)
    ours = NomicBertForPreTraining(NomicBertConfig(**{key: values[key] for key in ARCHITECTURE}))
    to_native(ours, bert_uncased_tokenizer(), workdir / config_file)
    native = transformers.AutoModelForMaskedLM.from_pretrained(workdir / config_file)
    assert type(native).__module__.startswith("transformers.models.nomic_bert"), type(native)
    return ours, native


def make_batches(batch_size: int, seq_length: int, count: int) -> list[dict]:
    """Packed-looking sequences ([CLS] ... [SEP] documents of random ordinary tokens), masked like in training."""
    generator = torch.Generator().manual_seed(0)
    collator = MaskingCollator(bert_uncased_tokenizer(), mlm_probability=0.3, seed=0)
    batches = []
    for _ in range(count):
        ids = torch.randint(1000, 30000, (batch_size, seq_length), generator=generator)
        ids[:, 0], ids[:, seq_length // 2], ids[:, seq_length // 2 + 1], ids[:, -1] = 101, 102, 101, 102
        batches.append(collator([{"input_ids": row.tolist()} for row in ids]))
    return batches


def same_loss(ours, native, batch) -> float:
    """Both models' MLM loss on one batch, without dropout: equal weights give equal losses."""
    ours.eval(), native.eval()
    with torch.no_grad():
        losses = ours(**batch).loss.item(), native(**batch).loss.item()
    if abs(losses[0] - losses[1]) > 1e-4 * abs(losses[1]):
        raise AssertionError(f"the models differ: losses {losses}")
    return losses[0]


def tokens_per_second(model, optimizer, batches) -> float:
    model.train()
    start = time.perf_counter()
    for batch in batches:
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    elapsed = time.perf_counter() - start
    return sum(batch["input_ids"].numel() for batch in batches) / elapsed


def measure(name: str, repeats: int, workdir: Path) -> dict:
    config_file, batch_size, seq_length, steps = CASES[name]
    ours, native = build_models(config_file, workdir)
    batches = make_batches(batch_size, seq_length, steps)
    loss = same_loss(ours, native, batches[0])
    models = {"ours": ours, "native": native}
    optimizers = {key: torch.optim.AdamW(model.parameters(), lr=1e-5) for key, model in models.items()}
    for key, model in models.items():  # warm-up step (allocations, optimizer state)
        tokens_per_second(model, optimizers[key], batches[:1])
    speeds = {key: [] for key in models}
    for _ in range(repeats):
        for key, model in models.items():
            speeds[key].append(tokens_per_second(model, optimizers[key], batches))
    medians = {key: statistics.median(values) for key, values in speeds.items()}
    return {
        "config": config_file, "parameters": ours.num_parameters(), "batch_size": batch_size,
        "seq_length": seq_length, "steps_per_repeat": steps, "repeats": repeats, "loss_check": loss,
        "tokens_per_second": speeds, "median_tokens_per_second": medians,
        "ratio": medians["ours"] / medians["native"],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", choices=list(CASES), default=["tiny", "nomic-bert-2048"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "mlm_throughput.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__, "transformers": transformers.__version__, "cases": {},
    }
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.configs:
            results["cases"][name] = measure(name, args.repeats, Path(workdir))
    print("| config | parameters | batch x length | ours tokens/s | native tokens/s | ours / native |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, case in results["cases"].items():
        medians = case["median_tokens_per_second"]
        print(f"| {name} | {case['parameters'] / 1e6:.1f}M | {case['batch_size']} x {case['seq_length']} | "
              f"{medians['ours']:,.0f} | {medians['native']:,.0f} | {case['ratio']:.2f}x |")
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
