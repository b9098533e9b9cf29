"""The R4D-Bench builder: non-region 4D VQA turned into region-prompted VQA (paper Fig. 3)."""
