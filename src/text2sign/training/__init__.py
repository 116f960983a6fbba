"""Training: the accelerate loop of `train` and `distill`, the frame autoencoder's training,
init-from, experiment trackers and run state (checkpoints, --resume).

May import evaluation/ (scores during a run), model_folder/, models/, diffusion/, data/ and
core/; never apps/, serve/ or cli/.
"""
