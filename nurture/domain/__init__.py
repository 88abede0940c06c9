"""The lead's life as pure code: cadences and the playbook, scoring and grading, humane
timing, the reducer of events, the cadence interpreter and the lead machine.

Nothing here does I/O or imports Temporal, a database or the web: the workflow and the
simulator drive the machine, and this is the only package passed through the workflow
sandbox.
"""
