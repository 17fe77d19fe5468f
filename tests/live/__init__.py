"""Live tests: the product run as deployed (real processes, real audio, real time)."""
