"""The model's companions: tokenizer, sentence-transformers embedder, checkpoint conversion, LoRA."""
