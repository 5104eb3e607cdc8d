"""Text to embeddings: the model bundle, the LiteRT encoder, the embedding cache."""
