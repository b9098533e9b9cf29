"""Perceptual 4D Distillation: D_4DP, Rearrange, L_LD and L_ED, and the named recipes."""
