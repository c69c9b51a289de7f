"""Small local evaluation tasks in the project's jsonl formats, written from real English text (Unix manual
one-liners and the opening of their descriptions, and everyday sentence pairs)."""

import json
from pathlib import Path

COMMANDS = {
    "grep": ("print lines that match patterns",
             "grep searches for patterns in each file and prints each line that matches a pattern."),
    "ls": ("list directory contents",
           "ls lists information about the files, the current directory by default, sorted alphabetically."),
    "cp": ("copy files and directories",
           "cp copies a source file to a destination, or multiple sources into a directory."),
    "mv": ("move or rename files",
           "mv renames a source to a destination, or moves several sources into a directory."),
    "tar": ("an archiving utility",
            "tar saves many files together into a single tape or disk archive, and can restore them from it."),
    "chmod": ("change file mode bits",
              "chmod changes the permissions of each given file according to a symbolic or octal mode."),
    "ssh": ("OpenSSH remote login client",
            "ssh is a program for logging into a remote machine and for executing commands on it securely."),
    "gzip": ("compress or expand files",
             "gzip reduces the size of the named files using Lempel-Ziv coding and adds the .gz extension."),
    "kill": ("send a signal to a process",
             "kill sends a signal, by default TERM, to the processes whose identifiers are given."),
    "cron": ("daemon to execute scheduled commands",
             "cron starts at boot and runs the commands listed in crontab files at the times they specify."),
}

STS_PAIRS = [
    ("A man is playing a guitar.", "A man plays the guitar.", 5.0),
    ("A woman is slicing an onion.", "A woman cuts an onion into pieces.", 4.2),
    ("The cat sleeps on the sofa.", "A cat is napping on the couch.", 4.5),
    ("Children are playing football in the park.", "Kids play soccer on a field.", 3.8),
    ("The train arrived late this morning.", "This morning's train was delayed.", 4.0),
    ("A chef is cooking pasta.", "The stock market fell sharply today.", 0.0),
    ("Two dogs run across the beach.", "A man reads a newspaper on a bench.", 0.4),
    ("She is writing a letter to her friend.", "A woman writes to a friend.", 3.9),
    ("The river flooded the village after the storm.", "Heavy rain caused flooding in the town.", 3.1),
    ("A plane is taking off.", "An airplane departs from the runway.", 4.6),
    ("He is learning to play the piano.", "The bakery sells fresh bread every day.", 0.1),
    ("The museum opens at nine.", "A baby is crying in the crib.", 0.0),
]

TOPICS = {
    "files": ["Copy the report into the backup folder.", "Rename the file before you archive it.",
              "Delete the temporary files from the disk.", "Compress the logs to save space.",
              "List every file in the home directory.", "Move the photos into a new folder."],
    "network": ["Log into the remote server over ssh.", "The router dropped the connection again.",
                "Check whether the host answers to ping.", "Open port 443 in the firewall.",
                "The download stalled because the network is slow.", "Configure the DNS server address."],
}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def write_retrieval_task(folder: Path, repeat_document: int = 1) -> Path:
    """queries = a command's one-line summary, documents = its description (`repeat_document` times longer)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "queries.jsonl", [{"id": f"q-{name}", "text": summary}
                                           for name, (summary, _) in COMMANDS.items()])
    write_jsonl(folder / "corpus.jsonl", [{"id": f"d-{name}", "title": name, "text": " ".join([text] * repeat_document)}
                                          for name, (_, text) in COMMANDS.items()])
    write_jsonl(folder / "qrels.jsonl", [{"query_id": f"q-{name}", "doc_id": f"d-{name}", "score": 1}
                                         for name in COMMANDS])
    return folder


def write_sts_task(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "test.jsonl", [{"sentence1": a, "sentence2": b, "score": s} for a, b, s in STS_PAIRS])
    return folder


def write_classification_task(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"text": text, "label": topic} for topic, texts in TOPICS.items() for text in texts]
    write_jsonl(folder / "train.jsonl", rows[0::2])
    write_jsonl(folder / "test.jsonl", rows[1::2])
    return folder


class InputRecorder:
    """Records what an mteb encoder's transformer actually receives: each input's token ids decoded back to text
    (special and padding tokens dropped), and the number of forward passes. It hooks the word-embedding layer, which
    every forward pass calls (sentence-transformers calls the model's `forward` method directly)."""

    def __init__(self, encoder, tokenizer):
        self.tokenizer = tokenizer
        self.texts: list[str] = []
        self.calls = 0
        encoder.model[0].auto_model.get_input_embeddings().register_forward_pre_hook(self.record)

    def record(self, module, args):
        """The model may run a padded batch as one flat sequence of real tokens: split at every [CLS]."""
        self.calls += 1
        ids = args[0].flatten().tolist()
        starts = [i for i, token in enumerate(ids) if token == self.tokenizer.cls_token_id] + [len(ids)]
        self.texts += [self.tokenizer.decode(ids[a:b], skip_special_tokens=True) for a, b in zip(starts, starts[1:])]

    def as_received(self, text: str) -> str:
        """`text` as the recorder would see it after tokenisation."""
        return self.tokenizer.decode(self.tokenizer(text, add_special_tokens=False)["input_ids"])
