"""Offline tooling: catalog building, embeddings, tokenizers, data, training, evaluation."""
