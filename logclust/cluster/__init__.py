"""Embeddings to cluster ids: k-means, the cluster model, `Labeler`, stream clustering."""
