"""r4d: 4D-RGPT, Perceptual 4D Distillation, R4D-Bench and a 4D VQA evaluation harness."""

__version__ = "0.1.0"
