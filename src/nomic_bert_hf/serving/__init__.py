"""Serving outside PyTorch: ONNX export and an onnxruntime-backed embedder."""
