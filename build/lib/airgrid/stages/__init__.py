"""The stages of the pipeline: ingest and detect, task owner, feedback intake, deadlines, warnings."""
