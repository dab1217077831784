"""Image backbones shared by the model families."""
