"""The 4D perception teacher (L4P-shaped): E_4D + D_m, its training, evaluation and cache."""
