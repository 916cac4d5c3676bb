"""Zero-shot evaluation: class embeddings, segmentation and classification."""
