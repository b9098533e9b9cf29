"""Training the student with SFT and P4D on Accelerate, checkpoints, logs and export."""
