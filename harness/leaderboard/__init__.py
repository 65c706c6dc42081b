"""Leaderboards: validated submissions, the tables built from them, and re-runs that verify them.

- ``submit.submit``: check a finished run folder and store it as a bundle (``bundle.py``:
  what a bundle holds; ``store.py``: the stored layout; ``checks.py``: every check;
  ``submission_check.py``: the one sequence of them that submit, build and reproduce run;
  ``packed_scores.py``: the scores file);
- ``build.build_outputs``: check every stored bundle again and render one table per dataset
  and protocol (``rows.py`` groups with pandas, ``render.py`` writes md/csv/tex,
  ``page.py`` the HTML pages);
- ``reproduce.reproduce``: train a stored submission again and compare its scores.

leaderboards/README.md documents the layout and the rules.
"""

from harness.leaderboard.build import FORMATS, build_outputs, stale_files, write_outputs
from harness.leaderboard.reproduce import Outcome, reproduce
from harness.leaderboard.submit import submit

__all__ = ["FORMATS", "Outcome", "build_outputs", "reproduce", "stale_files", "submit", "write_outputs"]
