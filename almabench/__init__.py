"""almabench: sparse training in anytime learning (ALMA), APP and its baselines, one harness."""

__version__ = "0.1.0"
