"""Publishing a trained embedder to the Hugging Face Hub."""
