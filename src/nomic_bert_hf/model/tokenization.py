"""The bert-base-uncased WordPiece tokenizer that NomicBERT uses, available offline."""

from pathlib import Path

from transformers import BertTokenizer, PreTrainedTokenizerBase

VOCAB_FILE = Path(__file__).parents[1] / "resources" / "vocab.txt"


def bert_uncased_tokenizer(model_max_length: int = 8192) -> BertTokenizer:
    """bert-base-uncased's tokenizer (30522 tokens, lower-cased) from the vocabulary shipped with this package."""
    tokens = VOCAB_FILE.read_text(encoding="utf-8").splitlines()
    return BertTokenizer(vocab={token: i for i, token in enumerate(tokens)}, model_max_length=model_max_length)


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, directory: str | Path) -> None:
    """`save_pretrained`, plus the `vocab.txt` that transformers 5 no longer writes (other WordPiece readers need it)."""
    tokenizer.save_pretrained(directory)
    write_vocab(tokenizer, directory)


def write_vocab(tokenizer: PreTrainedTokenizerBase, directory: str | Path) -> None:
    """Write the tokenizer's vocabulary as `vocab.txt`, one token per line in id order."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    Path(directory, "vocab.txt").write_text("".join(f"{token}\n" for token, _ in vocab), encoding="utf-8")
