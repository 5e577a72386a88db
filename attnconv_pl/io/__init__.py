"""A run directory's files and outputs: atomic writes, the epoch table (``dynamics.csv``), the
resolved config, the run lock, the W&B run, the launch record, and what the console shows."""
