"""Evaluators: the Chair Segments paper metrics beside Detectron2's own."""
