"""Studies: every variant and seed of a config trained through ``train.py`` (here or on SLURM),
then one report. ``python -m attnconv_pl.study`` runs :func:`attnconv_pl.study.runner.main`."""
