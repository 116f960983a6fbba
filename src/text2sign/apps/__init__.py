"""Applications a user runs whole: the demo (`text2sign demo`) and a model's description
(`text2sign info`).

May import every layer below (training/, evaluation/, model_folder/ and down); never serve/ or
cli/.
"""
