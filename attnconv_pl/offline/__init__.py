"""Probing saved checkpoints (``probe.py``): find and read them safely (``checkpoints``), choose the
data and device (``data_choice``), run every analysis over a run's checkpoints (``prober``) and
assemble each probed run for the report (``assemble``)."""
