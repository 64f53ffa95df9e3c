"""Centre keypoints for aerial images: DOTA labels, tiling, one heatmap per class."""
