"""Reading, validating, shaping, caching and writing sign-language clips."""
