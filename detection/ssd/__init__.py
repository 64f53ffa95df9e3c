"""Anchor-based single-shot detector: COCO-format boxes, multi-scale anchors, NMS decoding, mAP."""
