"""Meta-architectures, backbones, heads and losses (registered in Detectron2's registries)."""
