"""Partitions: impressions are partitioned by the day of their impression time.

Days are dynamic: they are discovered from the source files (a MIND dump spans a week in 2019,
a client's log spans whatever it spans), added by the first run, the nightly schedule and the
landing-file sensor. Keys are ISO dates (YYYY-MM-DD).
"""

from __future__ import annotations

import dagster as dg

behavior_days = dg.DynamicPartitionsDefinition(name="behavior_days")
