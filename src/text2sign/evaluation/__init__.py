"""Does a generated clip show the right sign? Recognizer, metrics and reports."""
