"""Stage 2 of the spacecraft pose pipeline: visible-keypoint heatmaps from a ResNet-50 U-Net."""
