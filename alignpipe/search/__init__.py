"""Search over a trained model's embeddings of a corpus: the index and what queries it."""
