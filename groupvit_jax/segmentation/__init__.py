"""Zero-shot semantic segmentation: the official protocol (windows, dense prediction, stitching),
the batched ``Segmenter``, benchmark datasets, the mIoU metric and pictures."""
