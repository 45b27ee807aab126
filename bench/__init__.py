"""attnbench's tools: verification, benchmarks, the regression gate and the command line."""
