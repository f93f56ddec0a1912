"""Baselines OFER is compared with: a deterministic ArcFace -> shape regressor (MICA-like)."""
