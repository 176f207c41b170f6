"""Speed benchmarks of daa_tf (not timed tests): ``python -m benchmarks.run --help``."""
