"""OFER inference: generators, ranker and the reconstruction pipeline."""
