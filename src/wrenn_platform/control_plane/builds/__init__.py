"""Template builds: an admin's recipe (base template, files, shell steps) queued in the database,
run by a worker inside a capsule through the capsule service, snapshotted into a team template.

- `service.py`: submit, list, get, cancel (the records).
- `runner.py`: one build, step by step, with its log; cancellation is seen between and during steps.
- `worker.py`: the app service that claims queued builds (any replica may; a conditional UPDATE
  decides who) and runs them one at a time.
"""
