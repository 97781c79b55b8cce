"""The Qt layer: thin widgets, item models and workers on top of kaihe_desktop.core."""
