"""Sweeps: a grid file expanded to cells and ensembles (``grid``, which documents the file),
run on this machine (``local``) or as Slurm scripts (``slurm``); ``harness.submitit_sweep``
submits the cells with submitit."""

from harness.sweep.grid import SWEEP_FOLDER, Cell, Ensemble, Grid, dry_run_lines, load_grid, parse_data_roots, run_args
from harness.sweep.local import LocalSweep, Summary
from harness.sweep.slurm import slurm_scripts, write_scripts

__all__ = ["SWEEP_FOLDER", "Cell", "Ensemble", "Grid", "LocalSweep", "Summary", "dry_run_lines", "load_grid",
           "parse_data_roots", "run_args", "slurm_scripts", "write_scripts"]
