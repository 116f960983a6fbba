"""The base every layer stands on: config (plain data), files (atomic writes, checksums), the
Hub's rules (what a Hub id is, offline mode), device and CUDA choices, console flags, report
formatting, run control, the LR schedule, text units (what a text is made of: the letters
every layer spells, times and reads).

Imports nothing of text2sign outside core/ (config imports only files); never torch at import
time except device and cuda.
"""
