"""The evaluation harness: benchmarks x official protocols x model adapters."""
