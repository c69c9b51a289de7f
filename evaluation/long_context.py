"""Long-context evaluation: the same retrieval tasks at several maximum sequence lengths, as a table by length.

Usage:
    python evaluation/long_context.py evaluation/configs/long_context/default.yaml \
        --model_name_or_path runs/nomic-embed-text/final
    python evaluation/long_context.py evaluation/configs/long_context/published.yaml \
        --model_name_or_path myorg/nomic-embed-text

Above the model's trained length (2048) the dynamic NTK factor `rotary_scaling_factor` (alpha = 2 in the paper) is
set on the model's config. `LongEmbed` (mteb's benchmark; its data come from the Hub) and local long-document
retrieval folders are both accepted; LoCo is not packaged in mteb 2.26. Each length is cached as its own mteb
experiment in `output_dir`, so an interrupted run continues. The table is printed and written to
`output_dir/long_context/<model>__<revision>.md` with the resolved config.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nomic_bert_hf.evaluation import (
    LONG_CONTEXT_LENGTHS,
    evaluate_long_context,
    resolve_model,
    resolve_tasks,
)
from nomic_bert_hf.evaluation.model_meta import default_model_name
from nomic_bert_hf.evaluation.results import markdown_length_table
from nomic_bert_hf.utils.cli import run_command
from nomic_bert_hf.utils.compute import choose_dtype, compute_record, dtype_name
from nomic_bert_hf.utils.configs import parse_config, save_config


@dataclass
class LongContextConfig:
    model_name_or_path: str = field(metadata={"help": "Embedder folder or Hub model id", "aliases": ["--model"]})
    tasks: list[str] = field(default_factory=lambda: ["LongEmbed"])
    lengths: list[int] = field(default_factory=lambda: list(LONG_CONTEXT_LENGTHS))
    rotary_scaling_factor: float = field(default=2.0, metadata={"help": "dynamic NTK alpha above the trained length"})
    model_name: str | None = None
    revision: str | None = None
    batch_size: int = 4
    output_dir: str = "results/mteb"
    dtype: str = field(default="auto", metadata={"help": "auto | float32 | bfloat16 (auto: bf16 on AMX / AVX-512 BF16)"})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "run the model's own code even where it is not this package's (a folder this package wrote runs as is)"
    })


def main(args=None):
    (config,) = parse_config([LongContextConfig], args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # 1. Resolve the model (a folder's revision is its weights digest, a Hub model's the commit)
    folder, revision = resolve_model(config.model_name_or_path, config.revision)
    name = config.model_name or default_model_name(config.model_name_or_path)

    # 2. Choose the tasks and the dtype
    tasks = resolve_tasks(config.tasks)
    dtype = choose_dtype(config.dtype)

    # 3. Evaluate at every length (cached per length)
    table = evaluate_long_context(config.model_name_or_path, tasks, results_dir=config.output_dir,
                                  lengths=config.lengths, rotary_scaling_factor=config.rotary_scaling_factor, name=name,
                                  revision=revision, batch_size=config.batch_size, dtype=dtype_name(dtype),
                                  trust_remote_code=config.trust_remote_code)

    # 4. Report the table by length and record the config
    report_dir = Path(config.output_dir) / "long_context" / f"{name.replace('/', '__')}__{revision}"
    markdown = markdown_length_table(table)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "summary.md").write_text(f"# {name} ({revision})\n\n{markdown}\n")
    save_config(report_dir, config)
    (report_dir / "compute.yaml").write_text(yaml.safe_dump(compute_record(dtype), sort_keys=True))
    print(f"\n{name} ({revision}), main score by maximum sequence length\n\n{markdown}\n")
    return table


if __name__ == "__main__":
    run_command(main)
