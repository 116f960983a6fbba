"""The model folder: what `text2sign train` writes and every other command reads."""
