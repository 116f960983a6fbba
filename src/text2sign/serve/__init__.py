"""`text2sign serve`: a web page to type a text and watch the sign, over a JSON API.

Needs the optional extra: pip install "text2sign[serve]" (Starlette and uvicorn). An
application beside apps/: may import evaluation/, model_folder/, data/ and core/; never cli/.
"""
