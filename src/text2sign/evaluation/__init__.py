"""Does a generated clip show the right sign? Recognizer, metrics and reports.

Beside training/: may import model_folder/ (the pipeline it scores), models/, diffusion/, data/
and core/; never training/, apps/, serve/ or cli/.
"""
