"""Zero-shot image classification: ImageNet-1k data and class names, the zero-shot classifier."""
